// Package kafkatest is for tests against a real Apache Kafka: free ports
// for a broker, scripts/kafka/broker.sh run from any package's directory,
// and the test binary run again as a child process (a publisher, an
// exporter, a box) that a test can SIGKILL as a crash. Tests only.
package kafkatest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// FreePorts finds n consecutive free ports on loopback and returns the
// first (a broker's client port, then its controller's, and so on).
func FreePorts(n int) int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := p+n < 65535
		for i := 1; i < n && ok; i++ {
			if l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i)); err == nil {
				l2.Close()
			} else {
				ok = false
			}
		}
		if ok {
			return p
		}
	}
}

// ScriptPath is scripts/kafka/broker.sh, found from the working directory
// (a package's, under go test) up to the module's root.
func ScriptPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", "kafka", "broker.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kafkatest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Script runs broker.sh with args (start DIR PORT, stop DIR,
// cluster-start DIR PORT N, node-stop DIR I KILL, ...).
func Script(args ...string) error {
	path, err := ScriptPath()
	if err != nil {
		return err
	}
	out, err := exec.Command("bash", append([]string{path}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("broker.sh %v: %v\n%s", args, err, out)
	}
	return nil
}

// Kafka is a test broker, or a cluster of n nodes (node i listens on
// Port+2(i-1)), in a directory of its own.
type Kafka struct {
	Dir     string
	Port    int
	Brokers []string
	nodes   int
}

// Start starts a single broker (nodes 1) or a KRaft cluster of nodes in a
// new temporary directory, with a reaper (Reap) that stops it if this
// process dies first. Stop stops it.
func Start(nodes int) (*Kafka, error) {
	dir, err := os.MkdirTemp("", "veil-kafka")
	if err != nil {
		return nil, err
	}
	k := &Kafka{Dir: dir, Port: FreePorts(2 * nodes), nodes: nodes}
	for i := range nodes {
		k.Brokers = append(k.Brokers, "127.0.0.1:"+strconv.Itoa(k.Port+2*i))
	}
	start, stop := []string{"start", dir, strconv.Itoa(k.Port)}, "stop"
	if nodes > 1 {
		start, stop = []string{"cluster-start", dir, strconv.Itoa(k.Port), strconv.Itoa(nodes)}, "cluster-stop"
	}
	if err := Script(start...); err != nil {
		Script(stop, dir)
		os.RemoveAll(dir)
		return nil, err
	}
	if err := Reap(stop, dir); err != nil {
		fmt.Fprintln(os.Stderr, "kafkatest: no reaper:", err)
	}
	return k, nil
}

// Script runs broker.sh verb on this broker's directory, with args after
// it (node-stop's node; start's port is added).
func (k *Kafka) Script(verb string, args ...string) error {
	if verb == "start" {
		args = append([]string{strconv.Itoa(k.Port)}, args...)
	}
	return Script(append([]string{verb, k.Dir}, args...)...)
}

// Stop stops the broker or the cluster and removes its directory.
func (k *Kafka) Stop() {
	if k.nodes > 1 {
		Script("cluster-stop", k.Dir)
	} else {
		Script("stop", k.Dir)
	}
	os.RemoveAll(k.Dir)
}

// Child is the test binary run again with a role in its environment.
type Child struct {
	Cmd  *exec.Cmd
	done chan struct{}
}

// StartChild runs the test binary (no tests) with env added, and calls
// onLine with each line it prints, from one goroutine, until it exits.
func StartChild(t testing.TB, env []string, onLine func(string)) *Child {
	t.Helper()
	c := &Child{Cmd: exec.Command(os.Args[0], "-test.run=^$"), done: make(chan struct{})}
	c.Cmd.Env = append(os.Environ(), env...)
	c.Cmd.Stderr = os.Stderr
	out, err := c.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			onLine(sc.Text())
		}
	}()
	return c
}

// Kill signals the child (SIGKILL: a crash; SIGTERM: a clean stop) and
// waits for it and its output to end.
func (c *Child) Kill(sig syscall.Signal) {
	c.Cmd.Process.Signal(sig)
	<-c.done
	c.Cmd.Wait()
}

// Reap starts a watcher, outside this process's group, that runs
// `broker.sh VERB DIR` (stop, or cluster-stop) and removes DIR once this
// process is gone, however it ends: a test binary that panics or is killed
// does not leave its brokers running.
func Reap(verb, dir string) error {
	script, err := ScriptPath()
	if err != nil {
		return err
	}
	return exec.Command("setsid", "bash", "-c", `while kill -0 "$0" 2>/dev/null; do sleep 1; done; bash "$1" "$2" "$3"; rm -rf "$3"`,
		strconv.Itoa(os.Getpid()), script, verb, dir).Start()
}
