package veil_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMetricsDocListsEveryMetric: every metric veil's code registers
// (a Name: "veil_…" in a non-test file) is in docs/metrics.md, and every
// veil_ name the doc lists is one the code registers.
func TestMetricsDocListsEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(veil_[a-z0-9_]+)"`)
	code := map[string]bool{}
	filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != "." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, m := range name.FindAllSubmatch(b, -1) {
			code[string(m[1])] = true
		}
		return nil
	})
	if len(code) < 20 {
		t.Fatalf("found %d metric names in the code: the pattern no longer matches how they are declared", len(code))
	}
	for n := range code {
		if !regexp.MustCompile("`" + n + "(\\{[^`]*)?`").Match(doc) {
			t.Errorf("docs/metrics.md does not list %s", n)
		}
	}
	for _, m := range regexp.MustCompile("\\|\\s*`(veil_[a-z0-9_]+)").FindAllSubmatch(doc, -1) {
		if !code[string(m[1])] {
			t.Errorf("docs/metrics.md lists %s, which the code does not register", m[1])
		}
	}
}
