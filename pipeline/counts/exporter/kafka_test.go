package exporter

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/kafkatest"
	"github.com/veilproject/veil/pipeline/counts/publish"
	"github.com/veilproject/veil/queue"

	"go.uber.org/goleak"
)

// A real Apache Kafka broker (KRaft, from Maven Central jars) is started by
// scripts/kafka/broker.sh for the fault tests.

var broker struct {
	*kafkatest.Kafka
	addr string
}

func TestMain(m *testing.M) {
	if role := os.Getenv("VEIL_TEST_ROLE"); role != "" {
		os.Exit(runRole(role))
	}
	flag.Parse()
	if testing.Short() {
		// No broker: the tests that need one skip (needBroker); the
		// in-process ones (kfake) run.
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}
		os.Exit(code)
	}
	k, err := kafkatest.Start(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the Kafka broker:", err)
		os.Exit(1)
	}
	broker.Kafka, broker.addr = k, k.Brokers[0]
	code := m.Run()
	// No test leaves a goroutine behind.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	k.Stop()
	os.Exit(code)
}

func brokerCmd(verb string) error { return broker.Script(verb) }

// needBroker skips t in -short mode, where no broker is started.
func needBroker(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real Kafka broker (not started in -short mode)")
	}
}

func realKafka(t testing.TB, topic string) kafkaconf.Config {
	needBroker(t)
	kc := kafkaconf.Config{Brokers: []string{broker.addr}, Topic: topic}
	if err := kc.EnsureTopic(context.Background(), topic, 3, nil); err != nil {
		t.Fatal(err)
	}
	return kc
}

// runRole makes the test binary act as a publisher or an exporter in a
// child process, so that a test can SIGKILL it like a crashed veil.
func runRole(role string) int {
	kc := kafkaconf.Config{Brokers: []string{os.Getenv("VEIL_TEST_BROKER")}, Topic: os.Getenv("VEIL_TEST_TOPIC")}
	switch role {
	case "publisher":
		// Publishes N events for camera "crash" and prints "spooled N" once
		// they are all in the spool; then waits to be killed.
		n, _ := strconv.Atoi(os.Getenv("VEIL_TEST_N"))
		reg := prometheus.NewRegistry()
		p, err := publish.New(publish.Config{Kafka: kc, SpoolDir: os.Getenv("VEIL_TEST_SPOOL")}, publish.Deps{Registerer: reg})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		q := queue.New[footfall.Event](n+1, queue.Block, nil)
		for _, e := range events([]string{"crash"}, n, 7) {
			q.Push(context.Background(), e)
		}
		go p.Run(context.Background(), q, time.Hour)
		for {
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				if mf.GetName() == "veil_publish_spool_events" && int(mf.GetMetric()[0].GetGauge().GetValue()) == n {
					fmt.Println("spooled", n)
					select {}
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "exporter":
		e, err := New(Config{Kafka: kc, GroupID: os.Getenv("VEIL_TEST_GROUP")}, Deps{Registerer: prometheus.NewRegistry()})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		go e.Run(context.Background())
		for {
			var n int64
			for _, lines := range e.Totals() {
				n += lines["door"][0]
			}
			fmt.Println("entries", n)
			time.Sleep(20 * time.Millisecond)
		}
	}
	return 2
}

func child(t *testing.T, role string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "VEIL_TEST_ROLE="+role, "VEIL_TEST_BROKER="+broker.addr)...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// TestBrokerOutageLosesNothing: the broker is stopped while events keep
// coming; they wait in the spool and arrive, once each, when it is back.
func TestBrokerOutageLosesNothing(t *testing.T) {
	needBroker(t)
	kc := realKafka(t, "outage")
	cams := []string{"a", "b", "c"}
	e, stopExp := startExporter(t, kc, "outage-g")
	defer stopExp()

	reg := prometheus.NewRegistry()
	p, err := publish.New(publish.Config{Kafka: kc, SpoolDir: t.TempDir()}, publish.Deps{Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New[footfall.Event](16, queue.Block, nil)
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), q, 2*time.Minute) }()
	evs := events(cams, 60, 1)
	spooled := 0.0
	for i, ev := range evs {
		if i == 60 {
			if err := brokerCmd("stop"); err != nil {
				t.Fatal(err)
			}
		}
		q.Push(context.Background(), ev)
		time.Sleep(10 * time.Millisecond)
		if i == 150 {
			spooled = testutil.ToFloat64(findGauge(t, reg, "veil_publish_spool_events"))
			if err := brokerCmd("start"); err != nil {
				t.Fatal(err)
			}
		}
	}
	q.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if spooled < 50 {
		t.Errorf("only %v events in the spool during the outage", spooled)
	}
	waitTotals(t, 120, cams, e)
	t.Logf("spooled during the outage: %v events; errors %v, retries %v", spooled,
		testutil.ToFloat64(findCounter(t, reg, "veil_publish_errors_total")), testutil.ToFloat64(findCounter(t, reg, "veil_publish_retries_total")))
}

// TestPublisherKilledWithSpoolResumes: the broker is down, veil spools
// events and is killed (SIGKILL); a new publisher on the same spool sends
// them when the broker is back.
func TestPublisherKilledWithSpoolResumes(t *testing.T) {
	needBroker(t)
	kc := realKafka(t, "crash")
	spoolDir := t.TempDir()
	if err := brokerCmd("stop"); err != nil {
		t.Fatal(err)
	}
	cmd, sc := child(t, "publisher", "VEIL_TEST_TOPIC=crash", "VEIL_TEST_N=40", "VEIL_TEST_SPOOL="+spoolDir)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "spooled") {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if err := brokerCmd("start"); err != nil {
		t.Fatal(err)
	}
	publishAll(t, kc, spoolDir, nil) // a restarted veil with nothing new
	e, stop := startExporter(t, kc, "crash-g")
	defer stop()
	waitTotals(t, 80, []string{"crash"}, e)
}

// TestExporterKilledMidStreamCountsOnce: an exporter is SIGKILLed while
// applying; a new one resumes from the saved state and ends with exact
// totals.
func TestExporterKilledMidStreamCountsOnce(t *testing.T) {
	needBroker(t)
	kc := realKafka(t, "expcrash")
	cams := []string{"x", "y"}
	cmd, sc := child(t, "exporter", "VEIL_TEST_TOPIC=expcrash", "VEIL_TEST_GROUP=expcrash-g")
	go func() {
		publishAll(t, kc, t.TempDir(), events(cams, 400, 1))
	}()
	for sc.Scan() {
		var n int64
		fmt.Sscanf(sc.Text(), "entries %d", &n)
		if n > 100 {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	e, stop := startExporter(t, kc, "expcrash-g")
	defer stop()
	waitTotals(t, 800, cams, e)
}

// TestRebalanceTwoExporters: a second exporter joins the group mid-stream
// and the first leaves; the partitions move with their saved state and
// every event counts once across the group.
func TestRebalanceTwoExporters(t *testing.T) {
	needBroker(t)
	kc := realKafka(t, "rebalance")
	cams := []string{"r1", "r2", "r3", "r4", "r5", "r6"}
	e1, stop1 := startExporter(t, kc, "rebalance-g")
	evs := events(cams, 100, 1)
	p, err := publish.New(publish.Config{Kafka: kc, SpoolDir: t.TempDir()}, publish.Deps{Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New[footfall.Event](16, queue.Block, nil)
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), q, time.Minute) }()
	var e2 *Exporter
	var stop2 func()
	for i, ev := range evs {
		switch i {
		case 150:
			e2, stop2 = startExporter(t, kc, "rebalance-g")
		case 450:
			stop1()
		}
		q.Push(context.Background(), ev)
		time.Sleep(5 * time.Millisecond)
	}
	q.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	defer stop2()
	_ = e1
	waitTotals(t, 200, cams, e2)
}

// TestBadInputIsCountedAndSkipped: garbage and a future schema version,
// written by an independent client (kcat), are counted and skipped; the
// good events around them count exactly.
func TestBadInputIsCountedAndSkipped(t *testing.T) {
	needBroker(t)
	kc := realKafka(t, "badinput")
	publishAll(t, kc, t.TempDir(), events([]string{"good"}, 10, 1))
	bad := "not json at all\n{\"schema\":\"veil.footfall.v9\",\"camera\":\"good\"}\n{\"schema\":\"veil.footfall.v1\",\"camera\":\"bad id!\"}\n"
	kcat := exec.Command("kcat", "-P", "-b", broker.addr, "-t", "badinput", "-k", "good", "-p", "0")
	kcat.Stdin = strings.NewReader(bad)
	if out, err := kcat.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v %s", err, out)
	}
	publishAll(t, kc, t.TempDir(), events([]string{"good"}, 20, 2))
	reg := prometheus.NewRegistry()
	e, err := New(Config{Kafka: kc, GroupID: "bad-g"}, Deps{Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	waitTotals(t, 60, []string{"good"}, e)
	cancel()
	<-done
	if v := testutil.ToFloat64(e.events.WithLabelValues("malformed")); v != 2 {
		t.Errorf("malformed %v, want 2", v)
	}
	if v := testutil.ToFloat64(e.events.WithLabelValues("unknown_schema")); v != 1 {
		t.Errorf("unknown_schema %v, want 1", v)
	}
	// kcat, independently, sees 33 messages on the topic.
	out, err := exec.Command("kcat", "-C", "-b", broker.addr, "-t", "badinput", "-e", "-q", "-f", "%k\n").Output()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "\n"); n != 33 {
		t.Errorf("kcat counted %d messages, want 33", n)
	}
}

func findGauge(t testing.TB, reg *prometheus.Registry, name string) prometheus.Collector {
	return metricByName(t, reg, name)
}

func findCounter(t testing.TB, reg *prometheus.Registry, name string) prometheus.Collector {
	return metricByName(t, reg, name)
}

// metricByName wraps one gathered metric as a collector for testutil.
func metricByName(t testing.TB, reg *prometheus.Registry, name string) prometheus.Collector {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "x"})
			g.Set(v)
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// TestExporterStartedBeforeTheTopicConsumes: on a real broker, an
// exporter that joins its group before the event topic exists (assigned
// no partition) picks the partitions up when the topic is created, and
// applies every event.
func TestExporterStartedBeforeTheTopicConsumes(t *testing.T) {
	needBroker(t)
	kc := kafkaconf.Config{Brokers: []string{broker.addr}, Topic: "coldstart"}
	e, stop := startExporter(t, kc, "coldstart-g")
	defer stop()
	time.Sleep(4 * time.Second) // joined, with nothing to consume
	if err := kc.EnsureTopic(context.Background(), kc.Topic, 3, nil); err != nil {
		t.Fatal(err)
	}
	cams := []string{"a", "b", "c"}
	publishAll(t, kc, t.TempDir(), events(cams, 20, 1))
	waitTotals(t, 40, cams, e)
}
