package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/signing"
)

// TestFleetFaults runs a small fleet (12 sites x 8 cameras, 1 s windows,
// each site signing with its key) into the three-broker cluster and three
// exporters in one group, through four faults while it publishes: a
// broker SIGKILLed and restarted, an exporter SIGKILLed (the others take
// its partitions), a box of six sites SIGKILLed with its spools and
// restarted (a new epoch), and a hostile producer writing one site's
// camera with another site's key. Afterwards the exporters' totals equal,
// exactly, what the topic holds signed by each site (deduplicated), and
// every event a box reported spooled is in the topic: 0 lost, 0 double.
func TestFleetFaults(t *testing.T) {
	needCluster(t)
	const sites, cams = 12, 8
	kc := kafkaconf.Config{Brokers: cluster.Brokers, Topic: "fleet-faults"}
	if err := kc.EnsureTopic(context.Background(), kc.Topic, 6, nil); err != nil {
		t.Fatal(err)
	}
	keysDir := writeKeys(t, sites)
	keys, err := signing.OpenKeyring(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	topic := "VEIL_FLEET_TOPIC=" + kc.Topic
	var exps []*member
	for range 3 {
		exps = append(exps, start(t, "exporter", topic, "VEIL_FLEET_GROUP=fleet-faults", "VEIL_FLEET_KEYS="+keysDir))
	}
	box := func(first int, spool string) *member {
		return start(t, "sites", topic, "VEIL_FLEET_SITES=6", fmt.Sprintf("VEIL_FLEET_FIRST=%d", first),
			fmt.Sprintf("VEIL_FLEET_CAMERAS=%d", cams), "VEIL_FLEET_WINDOW=1s", "VEIL_FLEET_SPOOL="+spool)
	}
	spoolA, spoolB := t.TempDir(), t.TempDir()
	a, b := box(0, spoolA), box(6, spoolB)
	step := func(what string, d time.Duration) {
		time.Sleep(d)
		t.Logf("%s: %s", time.Now().Format("15:04:05"), what)
	}
	step("broker 2 SIGKILLed", 8*time.Second)
	if err := cluster.Script("node-stop", "2", "KILL"); err != nil {
		t.Fatal(err)
	}
	step("exporter 1 SIGKILLed", 4*time.Second)
	exps[0].Kill(syscall.SIGKILL)
	step("broker 2 restarted", 4*time.Second)
	if err := cluster.Script("node-start", "2"); err != nil {
		t.Fatal(err)
	}
	step("box B (sites 6-11) SIGKILLed with its spools", 4*time.Second)
	b.Kill(syscall.SIGKILL)
	step("box B restarted on the same spools", 3*time.Second)
	b2 := box(6, spoolB)
	step("hostile producer: site-001's cam-0 with site-002's key", 6*time.Second)
	hostile(t, kc, 20)
	step("boxes stopped", 4*time.Second)
	a.Kill(syscall.SIGTERM)
	b2.Kill(syscall.SIGTERM)

	want, seen, forged := truth(t, kc, keys)
	if forged != 20 {
		t.Errorf("%d events in the topic failed their signature, want the hostile producer's 20", forged)
	}
	lost := 0
	for _, m := range []*member{a, b, b2} {
		for _, id := range m.spooled {
			if !seen[id] {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d events reported spooled are not in the topic", lost)
	}
	if len(want) != sites*cams {
		t.Errorf("the topic holds %d cameras, want %d", len(want), sites*cams)
	}
	deadline := time.Now().Add(90 * time.Second)
	for d := diff(want, exported(exps[1:]...)); len(d) > 0; d = diff(want, exported(exps[1:]...)) {
		if time.Now().After(deadline) {
			t.Fatalf("exporters disagree with the topic on %d of %d cameras:\n%s", len(d), len(want), strings.Join(d[:min(10, len(d))], "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(time.Second) // nothing may be applied twice later
	if d := diff(want, exported(exps[1:]...)); len(d) > 0 {
		t.Fatalf("after settling, exporters disagree with the topic:\n%s", strings.Join(d[:min(10, len(d))], "\n"))
	}
	var events, entries int64
	for _, m := range []*member{a, b, b2} {
		events += int64(len(m.spooled))
	}
	for _, w := range want {
		entries += w[0]
	}
	t.Logf("%d cameras, %d distinct events in the topic (%d reported spooled), %d entries: exported exactly", len(want), len(seen), events, entries)
	for _, e := range exps[1:] {
		e.Kill(syscall.SIGTERM)
	}
}

// hostile writes n events for site-001's cam-0, under a new epoch (which
// would be applied, were it believed), signed with site-002's key.
func hostile(t *testing.T, kc kafkaconf.Config, n int) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(kc.Brokers...), Topic: kc.Topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: tr}
	defer w.Close()
	now := time.Now()
	for i := range n {
		ev := footfall.Event{Schema: footfall.SchemaV1, Site: SiteName(1), Camera: CameraName(0), Epoch: now.UnixMilli(), Seq: uint64(i),
			WindowStart: now.Add(-time.Second), WindowEnd: now, Lines: []footfall.LineCount{{ID: "door", Entries: 50}}}
		b, _ := json.Marshal(ev)
		msg := kafka.Message{Key: []byte(ev.Source()), Value: b,
			Headers: []kafka.Header{{Key: signing.Header, Value: []byte(signing.Sign(siteKey(SiteName(2)), b))}}}
		if err := w.WriteMessages(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
}
