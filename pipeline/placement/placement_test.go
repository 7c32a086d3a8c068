package placement

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/kafkatest"
)

// A real Apache Kafka broker (scripts/kafka/broker.sh) is the group
// coordinator; the boxes are child processes, so that one can die
// (SIGKILL) without leaving the group.

var broker struct{ addr string }

func TestMain(m *testing.M) {
	if os.Getenv("VEIL_PLACEMENT_BOX") != "" {
		os.Exit(runBox())
	}
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	k, err := kafkatest.Start(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the Kafka broker:", err)
		os.Exit(1)
	}
	broker.addr = k.Brokers[0]
	code := m.Run()
	k.Stop()
	os.Exit(code)
}

var siteCameras = []Camera{{ID: "door"}, {ID: "desk"}, {ID: "hall"}, {ID: "lift"}, {ID: "park"}, {ID: "yard"}}

// runBox is one box of the site, printing what it serves each time that
// changes, until SIGTERM (a clean stop) or SIGKILL (a crash).
func runBox() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	p, err := New(Config{Kafka: kafkaconf.Config{Brokers: []string{os.Getenv("VEIL_PLACEMENT_BROKER")}}, Site: "s1",
		Box: os.Getenv("VEIL_PLACEMENT_BOX"), Console: "https://" + os.Getenv("VEIL_PLACEMENT_BOX") + ".office:8443/", Cameras: siteCameras, Handover: time.Second},
		Deps{Logger: testLogger(), Serve: func(cams []string) { fmt.Printf("serving %s\n", strings.Join(cams, ",")) }})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if err := p.Run(ctx); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

func testLogger() *slog.Logger {
	if os.Getenv("VEIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return nil
}

type box struct {
	*kafkatest.Child
	name    string
	mu      sync.Mutex
	serving []string
}

func startBox(t *testing.T, name string) *box {
	b := &box{name: name}
	b.Child = kafkatest.StartChild(t, []string{"VEIL_PLACEMENT_BOX=" + name, "VEIL_PLACEMENT_BROKER=" + broker.addr}, func(line string) {
		if s, ok := strings.CutPrefix(line, "serving "); ok {
			b.mu.Lock()
			b.serving = strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
			b.mu.Unlock()
		} else if strings.HasPrefix(line, "error") {
			t.Errorf("%s: %s", name, line)
		}
	})
	return b
}

func (b *box) kill(sig syscall.Signal) {
	b.Kill(sig)
	b.mu.Lock()
	b.serving = nil
	b.mu.Unlock()
}

// site is what each camera is served by, from the boxes' last words;
// twice is a camera two boxes serve at once.
func site(boxes ...*box) (by map[string]string, twice []string, loads []int) {
	by = map[string]string{}
	for _, b := range boxes {
		b.mu.Lock()
		for _, c := range b.serving {
			if _, ok := by[c]; ok {
				twice = append(twice, c)
			}
			by[c] = b.name
		}
		loads = append(loads, len(b.serving))
		b.mu.Unlock()
	}
	return by, twice, loads
}

// await polls until every camera is served once and loads (sorted) are
// want, failing on a camera served twice at any moment.
func await(t *testing.T, what string, within time.Duration, want []int, boxes ...*box) time.Duration {
	t.Helper()
	t0 := time.Now()
	for {
		by, twice, loads := site(boxes...)
		if len(twice) > 0 {
			t.Fatalf("%s: cameras %v served by two boxes at once", what, twice)
		}
		slices.Sort(loads)
		if len(by) == len(siteCameras) && slices.Equal(loads, want) {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			t.Fatalf("%s: after %v, cameras served %v, loads %v (want all, loads %v)", what, within, by, loads, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBoxDiesAndReturns: three boxes of a site share six cameras two each;
// one is SIGKILLed, and the other two serve all six within the session
// timeout (6 s, the least Kafka allows by default) and the handover (1 s); it comes back, and takes two
// cameras back (the others keep theirs). No camera is ever served by two
// boxes at once.
func TestBoxDiesAndReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real Kafka broker")
	}
	a, b, c := startBox(t, "box-a"), startBox(t, "box-b"), startBox(t, "box-c")
	defer func() {
		for _, x := range []*box{a, b, c} {
			x.kill(syscall.SIGTERM)
		}
	}()
	await(t, "start", 60*time.Second, []int{2, 2, 2}, a, b, c)
	before, _, _ := site(a, b, c)
	checkWhere(t, "start", before)
	b.kill(syscall.SIGKILL)
	took := await(t, "box-b killed", 15*time.Second, []int{0, 3, 3}, a, b, c)
	t.Logf("box-b SIGKILLed: its cameras served again by the others after %v", took.Round(100*time.Millisecond))
	after, _, _ := site(a, b, c)
	checkWhere(t, "box-b killed", after)
	for cam, was := range before {
		if was != "box-b" && after[cam] != was {
			t.Errorf("camera %s moved from %s to %s, though its box lived", cam, was, after[cam])
		}
	}
	b = startBox(t, "box-b")
	took = await(t, "box-b back", 30*time.Second, []int{2, 2, 2}, a, b, c)
	t.Logf("box-b back: serving its share after %v", took.Round(100*time.Millisecond))
}

// checkWhere: what the group's coordinator says each camera is served by
// (a box of the site that serves none, asking) is what the boxes serve.
func checkWhere(t *testing.T, what string, by map[string]string) {
	t.Helper()
	p, err := New(Config{Kafka: kafkaconf.Config{Brokers: []string{broker.addr}}, Site: "s1", Box: "box-a", Cameras: siteCameras},
		Deps{Serve: func([]string) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	where, err := p.Where(ctx)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(where) != len(siteCameras) {
		t.Fatalf("%s: where lists %d cameras, want %d", what, len(where), len(siteCameras))
	}
	for _, w := range where {
		if w.Box != by[w.Camera] || w.Console != "https://"+w.Box+".office:8443/" || w.Here != (w.Box == "box-a") {
			t.Errorf("%s: where says %+v; the boxes say %s", what, w, by[w.Camera])
		}
	}
}
