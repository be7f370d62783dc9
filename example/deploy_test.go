package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"go.yaml.in/yaml/v3"
)

// deployment is what TestDeployFilesKeepTheirTimeouts reads of a manifest.
type deployment struct {
	Spec struct {
		Strategy struct {
			RollingUpdate struct {
				MaxUnavailable *int `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				Containers                    []struct {
					Command []string `yaml:"command"`
					Env     []struct {
						Name  string `yaml:"name"`
						Value string `yaml:"value"`
					} `yaml:"env"`
					ReadinessProbe struct {
						PeriodSeconds    int `yaml:"periodSeconds"`
						FailureThreshold int `yaml:"failureThreshold"`
						TimeoutSeconds   int `yaml:"timeoutSeconds"`
					} `yaml:"readinessProbe"`
					Lifecycle struct {
						PreStop struct {
							Sleep struct {
								Seconds int `yaml:"seconds"`
							} `yaml:"sleep"`
						} `yaml:"preStop"`
					} `yaml:"lifecycle"`
					Resources struct {
						Requests map[string]string `yaml:"requests"`
						Limits   map[string]string `yaml:"limits"`
					} `yaml:"resources"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// timeouts returns the drain timeout and the kill grace that the program
// a deploy file starts takes from env (its MEMDRAIN_* variables), as the
// program reads them: a supervisor (a cluster, memdrain run) through
// cluster.FromEnv and its defaults, one process (standalone) through
// drain.ConfigFromEnv, with no kill grace. Each file's own settings are
// thereby checked against the defaults as they are now.
func timeouts(t *testing.T, env map[string]string, supervisor bool) (drainTimeout, killGrace time.Duration) {
	t.Helper()
	for _, k := range []string{"MEMDRAIN_DRAIN_TIMEOUT", "MEMDRAIN_KILL_GRACE"} {
		t.Setenv(k, env[k])
	}
	if !supervisor {
		cfg, err := drain.ConfigFromEnv(drain.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = drain.DefaultTimeout
		}
		return cfg.Timeout, 0
	}
	cfg, err := cluster.FromEnv(cluster.Config{Listen: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c.Config().DrainTimeout, c.Config().KillGrace
}

// givenOnlyAsVariables fails t when text sets a timeout some other way
// than the variables timeouts reads.
func givenOnlyAsVariables(t *testing.T, name, text string) {
	t.Helper()
	for _, other := range []string{"--drain-timeout", "--kill-grace", "EnvironmentFile="} {
		if strings.Contains(text, other) {
			t.Errorf("%s has %s: set the timeouts with MEMDRAIN_* variables (Environment=, env:), which this test reads", name, other)
		}
	}
}

// The deploy files keep their own promises. Under Kubernetes: the grace
// period outlasts preStop, the drain and (for a supervisor) the kill
// grace, so the kubelet's SIGKILL never cuts a drain; the memory request
// equals the limit, which the default drain point is taken from; a
// rollout keeps every pod serving; readiness fails within a second. Under
// systemd: TimeoutStopSec outlasts the drain and the kill grace.
func TestDeployFilesKeepTheirTimeouts(t *testing.T) {
	manifests, _ := filepath.Glob("../deploy/kubernetes/*.yaml")
	units, _ := filepath.Glob("../deploy/systemd/*.service")
	if len(manifests) < 2 || len(units) < 2 {
		t.Fatalf("found manifests %v and units %v; want two of each", manifests, units)
	}
	for _, path := range manifests {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var d deployment
		if err := yaml.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			givenOnlyAsVariables(t, name, string(b))
			if u := d.Spec.Strategy.RollingUpdate.MaxUnavailable; u == nil || *u != 0 {
				t.Errorf("maxUnavailable is not 0")
			}
			pod := d.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers; want 1", len(pod.Containers))
			}
			c := pod.Containers[0]
			env := make(map[string]string)
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			drainTimeout, killGrace := timeouts(t, env, slices.Contains(c.Command, "run"))
			need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + drainTimeout + killGrace
			if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= need {
				t.Errorf("terminationGracePeriodSeconds is %v; want more than preStop, the drain (%v) and the kill grace (%v): %v", grace, drainTimeout, killGrace, need)
			}
			if req, limit := c.Resources.Requests["memory"], c.Resources.Limits["memory"]; limit == "" || req != limit {
				t.Errorf("memory request %q, limit %q; want a limit, and the request equal to it", req, limit)
			}
			if p := c.ReadinessProbe; p.PeriodSeconds != 1 || p.FailureThreshold != 1 || p.TimeoutSeconds > 1 {
				t.Errorf("readiness every %d s, failing after %d, timing out after %d s; want 1, 1 and at most 1 (the default)", p.PeriodSeconds, p.FailureThreshold, p.TimeoutSeconds)
			}
		})
	}

	setting := regexp.MustCompile(`(?m)^(\w+)=(.*)$`)
	variable := regexp.MustCompile(`(MEMDRAIN_\w+)=(\S+)`)
	for _, path := range units {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			givenOnlyAsVariables(t, name, string(b))
			env := make(map[string]string)
			var stop string
			for _, m := range setting.FindAllStringSubmatch(string(b), -1) {
				switch m[1] {
				case "Environment":
					for _, v := range variable.FindAllStringSubmatch(m[2], -1) {
						env[v[1]] = v[2]
					}
				case "TimeoutStopSec":
					stop = strings.TrimSpace(m[2])
				}
			}
			drainTimeout, killGrace := timeouts(t, env, true) // both units run a supervisor
			got, err := time.ParseDuration(stop)
			if err != nil {
				t.Fatalf("TimeoutStopSec=%q: %v", stop, err)
			}
			if need := drainTimeout + killGrace; got <= need {
				t.Errorf("TimeoutStopSec is %v; want more than the drain (%v) and the kill grace (%v)", got, drainTimeout, killGrace)
			}
		})
	}
}
