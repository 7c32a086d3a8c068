// Package netnstest runs a test again inside a network namespace of its
// own, for WebRTC peers that will not use loopback (Chromium and libnice
// skip it, and libnice skips interfaces named veth*): a veth pair with an
// address on each side, the test binary run inside, everything removed
// afterwards. For tests only; it needs root.
package netnstest

import (
	"os"
	"os/exec"
	"testing"
)

const insideEnv = "VEIL_IN_NETNS"

// Inside reports whether this process is a test run again by Rerun.
func Inside() bool { return os.Getenv(insideEnv) == "1" }

// Rerun makes namespace name with a veth pair: link+"0" outside with
// subnet+".1/24", link+"1" inside with subnet+".2/24" (and lo up inside).
// It runs t's test of this binary again inside, where Inside is true,
// logs that run's output, fails t if it failed, and removes the namespace
// and the pair. Leftovers of a killed run are removed first.
func Rerun(t *testing.T, name, link, subnet string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace")
	}
	out, in := link+"0", link+"1"
	run := func(args ...string) {
		if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, b)
		}
	}
	exec.Command("ip", "netns", "del", name).Run() // a leftover from a killed run
	exec.Command("ip", "link", "del", out).Run()
	run("netns", "add", name)
	defer exec.Command("ip", "netns", "del", name).Run()
	run("link", "add", out, "type", "veth", "peer", "name", in)
	defer exec.Command("ip", "link", "del", out).Run()
	run("link", "set", in, "netns", name)
	run("addr", "add", subnet+".1/24", "dev", out)
	run("link", "set", out, "up")
	run("netns", "exec", name, "ip", "addr", "add", subnet+".2/24", "dev", in)
	run("netns", "exec", name, "ip", "link", "set", in, "up")
	run("netns", "exec", name, "ip", "link", "set", "lo", "up")
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	b, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", b)
	if err != nil {
		t.Fatalf("in netns: %v", err)
	}
}
