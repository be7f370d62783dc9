package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEGoIsCompiled: every Go snippet in the README is the text of an
// Example function, so `go test` compiles it and it cannot drift from the
// API.
func TestREADMEGoIsCompiled(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var examples strings.Builder
	for _, pattern := range []string{"../*/example_test.go", "../*/*/example_test.go"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			examples.Write(b)
		}
	}
	snippets := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(snippets) == 0 {
		t.Fatal("the README has no Go snippet: has the fence changed?")
	}
	for _, s := range snippets {
		if !strings.HasPrefix(s[1], "func Example") || !strings.HasSuffix(s[1], "}\n") || !strings.Contains(examples.String(), s[1]) {
			t.Errorf("this README snippet is not the text of an Example function in an example_test.go, with its closing fence on a line of its own:\n%s", s[1])
		}
	}
}

// TestREADMEDeployFilesAreQuoted: each of the README's unit file and
// manifest excerpts (its ini and yaml blocks) is lines of one file in
// deploy/, as they are there (indentation included), in their order, and
// with the line each sits under there (its [Section], its parent key),
// so the README cannot show a setting the files lost or moved.
func TestREADMEDeployFilesAreQuoted(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../deploy/*/*")
	texts := make(map[string][]string)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = strings.Split(string(b), "\n")
	}
	blocks := regexp.MustCompile("(?s)```(?:ini|yaml)\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 3 {
		t.Fatalf("the README has %d ini or yaml blocks; want the two units and the manifest", len(blocks))
	}
	for _, b := range blocks {
		var lines []string
		for _, l := range strings.Split(b[1], "\n") {
			if strings.TrimSpace(l) != "" {
				lines = append(lines, l)
			}
		}
		found := false
		for _, text := range texts {
			found = found || quotes(lines, text)
		}
		if !found {
			t.Errorf("no file in deploy/ has these lines, as they are, in this order and under the same parents:\n%s", b[1])
		}
	}
}

// quotes reports whether every line of part is a line of whole, in order,
// and whether the parent of each, in whole, is among them too.
func quotes(part, whole []string) bool {
	matched := make(map[int]bool)
	i := 0
	for k, l := range whole {
		if i < len(part) && l == part[i] {
			matched[k] = true
			i++
		}
	}
	if i < len(part) {
		return false
	}
	for k := range matched {
		if p := parent(whole, k); p >= 0 && !matched[p] {
			return false
		}
	}
	return true
}

// parent returns the index of the line that line k of lines sits under:
// in a unit file, its [Section]; in YAML, the nearest line before it that
// is indented less (comments and blank lines aside); -1 for none.
func parent(lines []string, k int) int {
	indent := func(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }
	if strings.HasPrefix(lines[k], "[") {
		return -1
	}
	for p := k - 1; p >= 0; p-- {
		l := lines[p]
		switch {
		case strings.HasPrefix(l, "["):
			return p
		case strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#"):
		case indent(l) < indent(lines[k]):
			return p
		}
	}
	return -1
}
