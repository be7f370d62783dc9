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
// deploy/, as they are there (indentation included) and in their order,
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
			found = found || isSubsequence(lines, text)
		}
		if !found {
			t.Errorf("no file in deploy/ has these lines, as they are and in this order:\n%s", b[1])
		}
	}
}

// isSubsequence reports whether every line of part is in whole, in order.
func isSubsequence(part, whole []string) bool {
	i := 0
	for _, l := range whole {
		if i < len(part) && l == part[i] {
			i++
		}
	}
	return i == len(part)
}
