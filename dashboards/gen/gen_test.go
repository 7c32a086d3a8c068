package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// TestCommittedDashboardsMatchCode fails when dashboards/grafana/*.json
// drift from this code: run `go run ./dashboards/gen` and commit.
func TestCommittedDashboardsMatchCode(t *testing.T) {
	dir := t.TempDir()
	if err := Render(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"footfall.json", "operations.json", "fleet.json"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "grafana", name))
		if err != nil {
			t.Fatalf("%v (run go run ./dashboards/gen)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("dashboards/grafana/%s drifted from dashboards/gen: run `go run ./dashboards/gen` and commit", name)
		}
		// The committed JSON is a valid dashboard for the SDK's strict
		// decoder (v0.0.22 returns an empty, non-nil error list on success).
		var d dashboard.Dashboard
		if err := d.UnmarshalJSONStrict(got); err != nil {
			if errs, ok := err.(interface{ Error() string }); ok && errs.Error() != "" {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}
