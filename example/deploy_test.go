package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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

// The defaults of the settings the files may leave out.
const (
	defaultDrainTimeout = 30 * time.Second // drain.Config.Timeout, cluster.Config.DrainTimeout
	defaultKillGrace    = 5 * time.Second  // cluster.Config.KillGrace
)

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
		if u := d.Spec.Strategy.RollingUpdate.MaxUnavailable; u == nil || *u != 0 {
			t.Errorf("%s: maxUnavailable is not 0", name)
		}
		pod := d.Spec.Template.Spec
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers; want 1", name, len(pod.Containers))
		}
		c := pod.Containers[0]
		env := make(map[string]string)
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + duration(t, env["MEMDRAIN_DRAIN_TIMEOUT"], defaultDrainTimeout)
		if slices.Contains(c.Command, "run") { // memdrain run stops its workers with SIGTERM, then SIGKILL
			need += duration(t, env["MEMDRAIN_KILL_GRACE"], defaultKillGrace)
		}
		if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= need {
			t.Errorf("%s: terminationGracePeriodSeconds is %v; want more than preStop, the drain and the kill grace: %v", name, grace, need)
		}
		if req, limit := c.Resources.Requests["memory"], c.Resources.Limits["memory"]; limit == "" || req != limit {
			t.Errorf("%s: memory request %q, limit %q; want a limit, and the request equal to it", name, req, limit)
		}
		if p := c.ReadinessProbe; p.PeriodSeconds != 1 || p.FailureThreshold != 1 {
			t.Errorf("%s: readiness every %d s, failing after %d; want 1 and 1", name, p.PeriodSeconds, p.FailureThreshold)
		}
	}

	setting := regexp.MustCompile(`(?m)^(\w+)=(.*)$`)
	variable := regexp.MustCompile(`(MEMDRAIN_\w+)=(\S+)`)
	for _, path := range units {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		env := make(map[string]string)
		var stop string
		for _, m := range setting.FindAllStringSubmatch(string(b), -1) {
			switch m[1] {
			case "Environment":
				for _, v := range variable.FindAllStringSubmatch(m[2], -1) {
					env[v[1]] = v[2]
				}
			case "TimeoutStopSec":
				stop = m[2]
			}
		}
		need := duration(t, env["MEMDRAIN_DRAIN_TIMEOUT"], defaultDrainTimeout) + duration(t, env["MEMDRAIN_KILL_GRACE"], defaultKillGrace)
		if got := duration(t, strings.TrimSpace(stop), 0); got <= need {
			t.Errorf("%s: TimeoutStopSec is %v; want more than the drain and the kill grace: %v", filepath.Base(path), got, need)
		}
	}
}

// duration parses v, a Go duration, or returns def when v is empty.
func duration(t *testing.T, v string, def time.Duration) time.Duration {
	t.Helper()
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%q: %v", v, err)
	}
	return d
}
