package decode

import (
	"bytes"
	"math/rand/v2"
	"os/exec"
	"testing"
)

// annexB encodes a short clip to a raw H.264 Annex-B stream with ffmpeg and
// splits it into access units: parameter sets and SEI go with the slice
// that follows them, as an RTP depacketizer delivers them.
func annexB(t *testing.T) [][]byte {
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
		"-frames:v", "30", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "0", "-f", "h264", "pipe:1").Output()
	if err != nil {
		t.Fatal(err)
	}
	sc := []byte{0, 0, 0, 1}
	var aus [][]byte
	var cur []byte
	for _, p := range bytes.Split(out, sc) {
		if len(p) == 0 {
			continue
		}
		cur = append(append(cur, sc...), p...)
		if typ := p[0] & 0x1f; typ == 1 || typ == 5 { // a coded slice ends the unit
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus
}

func TestDecodesRealStream(t *testing.T) {
	d, err := NewH264()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	frames := 0
	for _, n := range annexB(t) {
		if _, err := d.Decode(n, func(w, h int, bgr []byte) {
			if w != 320 || h != 240 || len(bgr) != w*h*3 {
				t.Fatalf("%dx%d, %d bytes", w, h, len(bgr))
			}
			frames++
		}); err != nil {
			t.Fatal(err)
		}
	}
	if frames < 25 {
		t.Errorf("%d frames decoded of 30", frames)
	}
}

// TestSurvivesTruncatedAndGarbage: truncated NAL units and random bytes give
// errors or nothing, never a crash, and the decoder recovers at the next
// keyframe.
func TestSurvivesTruncatedAndGarbage(t *testing.T) {
	d, err := NewH264()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	nalus := annexB(t)
	for i := 0; i < 500; i++ {
		g := make([]byte, rng.IntN(3000))
		for j := range g {
			g[j] = byte(rng.Uint32())
		}
		d.Decode(g, func(int, int, []byte) {})
	}
	for i, n := range nalus {
		if i%3 == 1 {
			n = n[:len(n)/2] // truncated
		}
		d.Decode(n, func(int, int, []byte) {})
	}
	frames := 0
	for _, n := range nalus {
		d.Decode(n, func(int, int, []byte) { frames++ })
	}
	if frames < 20 {
		t.Errorf("after garbage, only %d frames of an intact pass", frames)
	}
}

// TestRefusesPicturesAboveTheLimit: a stream whose pictures are larger
// than the decoder's limit (here 320x240 against a limit of 200x200, as a
// forged 16000x16000 SPS against the default) yields errors and no
// picture, so nothing of that size is ever allocated downstream.
func TestRefusesPicturesAboveTheLimit(t *testing.T) {
	d, err := New(CodecH264, 200*200)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	errs, frames := 0, 0
	for _, n := range annexB(t) {
		if _, err := d.Decode(n, func(int, int, []byte) { frames++ }); err != nil {
			errs++
		}
	}
	if frames != 0 || errs == 0 {
		t.Errorf("%d pictures decoded above the limit, %d errors", frames, errs)
	}
	if _, err := New(CodecH264, 0); err != nil {
		t.Fatal(err)
	}
}
