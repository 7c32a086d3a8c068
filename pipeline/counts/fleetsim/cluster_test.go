package fleetsim

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/exporter"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/kafkatest"
	"github.com/veilproject/veil/pipeline/counts/signing"
)

// A real three-node Apache Kafka cluster (KRaft; replication factor 3,
// min.insync.replicas 2) on loopback, started by scripts/kafka/broker.sh
// cluster-start from the same Maven Central jars as the single broker.

var cluster struct{ *kafkatest.Kafka }

func TestMain(m *testing.M) {
	if role := os.Getenv("VEIL_FLEET_ROLE"); role != "" {
		os.Exit(runRole(role))
	}
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	k, err := kafkatest.Start(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the Kafka cluster:", err)
		os.Exit(1)
	}
	cluster.Kafka = k
	code := m.Run()
	k.Stop()
	os.Exit(code)
}

func needCluster(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the three-node Kafka cluster (not started in -short mode)")
	}
}

// siteKey derives a test key per site (a real fleet uses random keys).
func siteKey(site string) signing.Key {
	k, _ := signing.ParseKey(hex.EncodeToString([]byte(strings.Repeat(site+"|", 8)[:32])))
	return k
}

func writeKeys(t testing.TB, sites int) string {
	dir := t.TempDir()
	for i := range sites {
		s := SiteName(i)
		if err := os.WriteFile(filepath.Join(dir, s+".key"), []byte(hex.EncodeToString(siteKey(s))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runRole makes the test binary a fleet member in a child process, so that
// a test can SIGKILL it as a box or an exporter crashes.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	kc := kafkaconf.Config{Brokers: strings.Split(os.Getenv("VEIL_FLEET_BROKERS"), ","), Topic: os.Getenv("VEIL_FLEET_TOPIC")}
	env := func(k string) int { n, _ := strconv.Atoi(os.Getenv(k)); return n }
	var out sync.Mutex
	switch role {
	case "sites":
		// Publishes its sites until SIGTERM; prints each event once it is
		// durably spooled.
		w, _ := time.ParseDuration(os.Getenv("VEIL_FLEET_WINDOW"))
		cfg := Config{Kafka: kc, Sites: env("VEIL_FLEET_SITES"), FirstSite: env("VEIL_FLEET_FIRST"), Cameras: env("VEIL_FLEET_CAMERAS"),
			Window: w, SpoolDir: os.Getenv("VEIL_FLEET_SPOOL"), Key: siteKey}
		err := Run(ctx, cfg, Deps{OnSpooled: func(ev footfall.Event) {
			out.Lock()
			fmt.Printf("spooled %s %d %d\n", ev.Source(), ev.Epoch, ev.Seq)
			out.Unlock()
		}}, 10*time.Second)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("done")
		return 0
	case "exporter":
		// Prints its totals every 250 ms; on SIGTERM writes every delay it
		// saw to VEIL_FLEET_DELAYS and exits.
		var mu sync.Mutex
		var delays []time.Duration
		reg := prometheus.NewRegistry()
		e, err := exporter.New(exporter.Config{Kafka: kc, GroupID: os.Getenv("VEIL_FLEET_GROUP"), SiteKeysDir: os.Getenv("VEIL_FLEET_KEYS")},
			exporter.Deps{Registerer: reg, OnDelay: func(d time.Duration) { mu.Lock(); delays = append(delays, d); mu.Unlock() }})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		tick := time.NewTicker(250 * time.Millisecond)
		for {
			select {
			case <-tick.C:
				b, _ := json.Marshal(e.Totals())
				fmt.Printf("totals %s\n", b)
				mfs, _ := reg.Gather()
				for _, mf := range mfs {
					if mf.GetName() == "veil_exporter_partitions_owned" {
						fmt.Printf("owned %d\n", int(mf.GetMetric()[0].GetGauge().GetValue()))
					}
				}
			case err := <-done:
				mu.Lock()
				var sb strings.Builder
				for _, d := range delays {
					fmt.Fprintln(&sb, int64(d))
				}
				mu.Unlock()
				os.WriteFile(os.Getenv("VEIL_FLEET_DELAYS"), []byte(sb.String()), 0o644)
				if err != nil {
					fmt.Println("error", err)
					return 1
				}
				return 0
			}
		}
	}
	return 2
}

// member is a child process of the fleet: its last totals line, and each
// event it spooled.
type member struct {
	*kafkatest.Child
	mu      sync.Mutex
	totals  map[string]map[string][2]int64
	owned   int
	spooled []string
	delays  string
}

func start(t testing.TB, role string, env ...string) *member {
	t.Helper()
	m := &member{delays: filepath.Join(t.TempDir(), "delays")}
	env = append(env, "VEIL_FLEET_ROLE="+role, "VEIL_FLEET_BROKERS="+strings.Join(cluster.Brokers, ","), "VEIL_FLEET_DELAYS="+m.delays)
	m.Child = kafkatest.StartChild(t, env, func(line string) {
		m.mu.Lock()
		defer m.mu.Unlock()
		switch {
		case strings.HasPrefix(line, "totals "):
			var tot map[string]map[string][2]int64
			if json.Unmarshal([]byte(line[7:]), &tot) == nil {
				m.totals = tot
			}
		case strings.HasPrefix(line, "owned "):
			m.owned, _ = strconv.Atoi(line[6:])
		case strings.HasPrefix(line, "spooled "):
			m.spooled = append(m.spooled, line[8:])
		case strings.HasPrefix(line, "error"):
			t.Errorf("%s: %s", role, line)
		}
	})
	return m
}

// truth reads the whole topic back: every event a key of its site signed,
// deduplicated on (site, camera, epoch, seq), summed per source; and the
// set of events seen.
func truth(t testing.TB, kc kafkaconf.Config, keys *signing.Keyring) (map[string][2]int64, map[string]bool, int) {
	t.Helper()
	conn, err := kafka.Dial("tcp", kc.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(kc.Topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	totals := map[string][2]int64{}
	seen := map[string]bool{}
	forged := 0
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.Brokers, Topic: kc.Topic, Partition: p.ID, MaxWait: 200 * time.Millisecond})
		c, err := kafka.DialLeader(context.Background(), "tcp", kc.Brokers[0], kc.Topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := c.ReadLastOffset()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < last; off++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			msg, err := r.ReadMessage(ctx)
			cancel()
			if err != nil {
				t.Fatalf("reading partition %d at %d of %d: %v", p.ID, off, last, err)
			}
			off = msg.Offset
			ev, err := footfall.Parse(msg.Value)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", p.ID, msg.Offset, err)
			}
			var sig string
			for _, h := range msg.Headers {
				if h.Key == signing.Header {
					sig = string(h.Value)
				}
			}
			if !signing.Verify(keys.Keys(ev.Site), msg.Value, sig) {
				forged++
				continue
			}
			id := fmt.Sprintf("%s %d %d", ev.Source(), ev.Epoch, ev.Seq)
			if seen[id] {
				continue // a resend
			}
			seen[id] = true
			tot := totals[ev.Source()]
			for _, l := range ev.Lines {
				tot[0] += int64(l.Entries)
				tot[1] += int64(l.Exits)
			}
			totals[ev.Source()] = tot
		}
		r.Close()
	}
	return totals, seen, forged
}

// exported sums the members' last totals (each owns other partitions).
func exported(ms ...*member) map[string][2]int64 {
	out := map[string][2]int64{}
	for _, m := range ms {
		m.mu.Lock()
		for src, lines := range m.totals {
			t := out[src]
			t[0] += lines["door"][0]
			t[1] += lines["door"][1]
			out[src] = t
		}
		m.mu.Unlock()
	}
	return out
}

func diff(want, got map[string][2]int64) []string {
	var out []string
	for src, w := range want {
		if g := got[src]; g != w {
			out = append(out, fmt.Sprintf("%s: exported %v, topic %v", src, g, w))
		}
	}
	for src, g := range got {
		if _, ok := want[src]; !ok {
			out = append(out, fmt.Sprintf("%s: exported %v, not in the topic", src, g))
		}
	}
	slices.Sort(out)
	return out
}

// waitGroup waits until the members own all n partitions between them,
// unchanged for two seconds (the group has formed).
func waitGroup(t testing.TB, n int, ms ...*member) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	stable := time.Time{}
	for time.Now().Before(deadline) {
		sum := 0
		for _, m := range ms {
			m.mu.Lock()
			sum += m.owned
			m.mu.Unlock()
		}
		switch {
		case sum != n:
			stable = time.Time{}
		case stable.IsZero():
			stable = time.Now()
		case time.Since(stable) > 2*time.Second:
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the exporters never owned all %d partitions between them", n)
}
