package exporter

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/publish"
	"github.com/veilproject/veil/pipeline/counts/signing"
)

const (
	keyS1 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	keyS2 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

// siteKeys writes a keys directory with one key per site.
func siteKeys(t testing.TB, keys map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for site, k := range keys {
		if err := os.WriteFile(filepath.Join(dir, site+".key"), []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustKey(t testing.TB, text string) signing.Key {
	t.Helper()
	k, err := signing.ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publishSigned runs a real publisher with key (nil: unsigned) over evs.
func publishSigned(t testing.TB, kc kafkaconf.Config, key signing.Key, evs []footfall.Event) {
	t.Helper()
	publishWith(t, publish.Config{Kafka: kc, SpoolDir: t.TempDir(), SignKey: key}, evs)
}

func atSite(site string, evs []footfall.Event) []footfall.Event {
	for i := range evs {
		evs[i].Site = site
	}
	return evs
}

// TestSitesAndSignatures: two offices both have a camera called lobby.
// Their counts stay apart (by site), and with site keys the exporter
// applies only what each site signed: a hostile producer writing the
// other site's lobby with its own key, and one writing unsigned, change
// nothing and are counted by result.
func TestSitesAndSignatures(t *testing.T) {
	kc := fakeKafka(t, 3)
	k1, k2 := mustKey(t, keyS1), mustKey(t, keyS2)
	publishSigned(t, kc, k1, atSite("s1", events([]string{"lobby"}, 20, 1)))
	publishSigned(t, kc, k2, atSite("s2", events([]string{"lobby", "desk"}, 10, 1)))
	// Hostile: site 2's key on site 1's lobby (a new epoch, which would
	// otherwise be applied), and site 1's lobby unsigned, and no site.
	publishSigned(t, kc, k2, atSite("s1", events([]string{"lobby"}, 5, 2)))
	publishSigned(t, kc, nil, atSite("s1", events([]string{"lobby"}, 3, 3)))
	publishSigned(t, kc, k1, events([]string{"lobby"}, 2, 4))
	publishSigned(t, kc, k1, atSite("s9", events([]string{"lobby"}, 1, 5))) // a site with no key here

	reg := prometheus.NewRegistry()
	e, err := New(Config{Kafka: kc, GroupID: "g", SiteKeysDir: siteKeys(t, map[string]string{"s1": keyS1, "s2": keyS2})},
		Deps{Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitTotals(t, 40, []string{"s1/lobby"}, e)
	waitTotals(t, 20, []string{"s2/lobby", "s2/desk"}, e)
	for _, c := range []struct {
		result string
		want   float64
	}{{"applied", 40}, {"bad_signature", 5 + 2 + 1}, {"unsigned", 3}} {
		if v := testutil.ToFloat64(e.events.WithLabelValues(c.result)); v != c.want {
			t.Errorf("events %s: %v, want %v", c.result, v, c.want)
		}
	}
	want := `
# HELP veil_footfall_entries_total People who entered across a line (exactly once per event).
# TYPE veil_footfall_entries_total counter
veil_footfall_entries_total{camera="desk",line="door",site="s2"} 20
veil_footfall_entries_total{camera="lobby",line="door",site="s1"} 40
veil_footfall_entries_total{camera="lobby",line="door",site="s2"} 20
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "veil_footfall_entries_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "veil_footfall_window_end_timestamp_seconds"); err != nil || n != 3 {
		t.Errorf("window end series: %d (%v), want 3", n, err)
	}
}

// TestNoKeysTakesEverything: without site keys (a single box, the demo)
// the exporter applies signed and unsigned events alike, and a site-less
// event is exported with an empty site label, as before sites existed.
func TestNoKeysTakesEverything(t *testing.T) {
	kc := fakeKafka(t, 1)
	publishSigned(t, kc, nil, events([]string{"lobby"}, 5, 1))
	publishSigned(t, kc, mustKey(t, keyS1), atSite("s1", events([]string{"lobby"}, 5, 1)))
	e, stop := startExporter(t, kc, "g")
	defer stop()
	waitTotals(t, 10, []string{"lobby", "s1/lobby"}, e)
}
