package detect

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/veilproject/veil/blur"
)

func rssMB() float64 {
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

func TestZZProbeMem(t *testing.T) {
	lanes, _ := strconv.Atoi(os.Getenv("LANES"))
	det, err := New(Config{ModelDir: modelDir(t), Lanes: lanes, Precision: os.Getenv("PREC")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	debug.FreeOSMemory()
	fmt.Printf("start %.0f\n", rssMB())
	ls := Lanes(det)
	for _, s := range [][2]int{{160, 160}, {224, 224}, {320, 320}, {448, 448}, {640, 640}, {1280, 720}} {
		pix := make([]byte, s[0]*s[1]*3)
		for i := range pix {
			pix[i] = byte(i * 7)
		}
		for i, l := range ls {
			if _, err := l.Detect(context.Background(), blur.Image{Width: s[0], Height: s[1], Pix: pix}); err != nil {
				t.Fatal(err)
			}
			debug.FreeOSMemory()
			fmt.Printf("%v lane %d: %.0f\n", s, i, rssMB())
		}
	}
}
