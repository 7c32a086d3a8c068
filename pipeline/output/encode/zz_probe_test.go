package encode

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func rssMBz() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.Atoi(f[1])
			return float64(v) / 1024
		}
	}
	return 0
}

func BenchmarkZZMem(b *testing.B) {
	fs := realFrames(b, 60)
	debug.FreeOSMemory()
	r0 := rssMBz()
	var es []*Encoder
	for i := 0; i < 8; i++ {
		e, err := NewEncoder(Options{Width: 1280, Height: 720, Preset: os.Getenv("PRESET")})
		if err != nil {
			b.Fatal(err)
		}
		es = append(es, e)
		for _, f := range fs {
			if _, err := e.Encode(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	debug.FreeOSMemory()
	fmt.Printf("8 encoders: %.1f MB each\n", (rssMBz()-r0)/8)
	for _, e := range es {
		e.Free()
	}
}
