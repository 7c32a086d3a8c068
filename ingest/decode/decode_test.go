package decode

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"testing"
)

// stream encodes a short 320x240 clip with ffmpeg and splits it into the
// units an RTP depacketizer delivers: for H.264 and H.265, access units in
// Annex-B form with their parameter sets and SEI in front of the slice that
// follows them; for MJPEG, one JPEG per frame.
func stream(t testing.TB, c Codec) [][]byte { return streamSized(t, c, "320x240") }

func streamSized(t testing.TB, c Codec, size string) [][]byte {
	t.Helper()
	args := []string{"-v", "error", "-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=10", "-frames:v", "30"}
	switch c {
	case CodecH264:
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "0", "-f", "h264")
	case CodecH265:
		args = append(args, "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=10:bframes=0:log-level=error", "-f", "hevc")
	case CodecMJPEG:
		args = append(args, "-c:v", "mjpeg", "-q:v", "5", "-f", "mjpeg")
	}
	out, err := exec.Command("ffmpeg", append(args, "pipe:1")...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if c == CodecMJPEG {
		var frames [][]byte
		for _, p := range bytes.SplitAfter(out, []byte{0xff, 0xd9}) { // EOI
			if len(p) > 0 {
				frames = append(frames, p)
			}
		}
		return frames
	}
	sc := []byte{0, 0, 0, 1}
	var aus [][]byte
	var cur []byte
	for _, p := range bytes.Split(out, sc) {
		if len(p) == 0 {
			continue
		}
		cur = append(append(cur, sc...), p...)
		slice := false
		if c == CodecH264 {
			typ := p[0] & 0x1f
			slice = typ == 1 || typ == 5
		} else {
			slice = (p[0]>>1)&0x3f < 32 // VCL NAL unit types are 0..31
		}
		if slice { // a coded slice ends the unit (one slice per picture here)
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus
}

var allCodecs = []Codec{CodecH264, CodecH265, CodecMJPEG}

// picture is a fresh BGR buffer for every picture, as a camera's frames are.
func picture(w, h int) []byte { return make([]byte, w*h*3) }

func TestDecodesRealStream(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			d, err := New(c, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			frames := 0
			for _, n := range stream(t, c) {
				var got []byte
				ok, err := d.Decode(n, func(w, h int) []byte {
					if w != 320 || h != 240 {
						t.Fatalf("%dx%d", w, h)
					}
					got = make([]byte, w*h*3)
					return got
				})
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					frames++
					if bytes.Count(got, []byte{0}) == len(got) {
						t.Fatalf("frame %d: the BGR buffer was left empty", frames)
					}
				}
			}
			if frames < 25 {
				t.Errorf("%d frames decoded of 30", frames)
			}
		})
	}
}

// TestSurvivesTruncatedAndGarbage: truncated units and random bytes give
// errors or nothing, never a crash, and the decoder recovers at the next
// keyframe.
func TestSurvivesTruncatedAndGarbage(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			d, err := New(c, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			units := stream(t, c)
			for i := 0; i < 500; i++ {
				g := make([]byte, rng.IntN(3000))
				for j := range g {
					g[j] = byte(rng.Uint32())
				}
				d.Decode(g, picture)
			}
			for i, n := range units {
				if i%3 == 1 {
					n = n[:len(n)/2] // truncated
				}
				d.Decode(n, picture)
			}
			frames := 0
			for _, n := range units {
				if ok, _ := d.Decode(n, picture); ok {
					frames++
				}
			}
			if frames < 20 {
				t.Errorf("after garbage, only %d frames of an intact pass", frames)
			}
		})
	}
}

// TestIntoDecidesTheBuffer: the caller's buffer is where the picture goes;
// no buffer (nil) skips the picture without an error, and a buffer of the
// wrong size is refused rather than written past or left half empty.
func TestIntoDecidesTheBuffer(t *testing.T) {
	d, err := New(CodecH264, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	skipped, refused := 0, 0
	for i, n := range stream(t, CodecH264) {
		asked := false
		ok, err := d.Decode(n, func(w, h int) []byte {
			asked = true
			switch i % 2 {
			case 0:
				skipped++
				return nil
			default:
				refused++
				return make([]byte, w*h*3-1)
			}
		})
		if ok {
			t.Fatalf("unit %d: a picture was reported without a buffer of the right size", i)
		}
		if asked && i%2 == 1 && err == nil {
			t.Fatalf("unit %d: a short buffer was accepted", i)
		}
	}
	if skipped == 0 || refused == 0 {
		t.Fatalf("skipped %d, refused %d: the stream gave no pictures", skipped, refused)
	}
}

// TestRefusesPicturesAboveTheLimit: a stream whose pictures are larger
// than the decoder's limit (here 320x240 against a limit of 200x200, as a
// forged 16000x16000 SPS against the default) yields errors and no
// picture, so nothing of that size is ever allocated downstream.
func TestRefusesPicturesAboveTheLimit(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			d, err := New(c, 200*200)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			errs, frames := 0, 0
			for _, n := range stream(t, c) {
				if _, err := d.Decode(n, func(w, h int) []byte { frames++; return picture(w, h) }); err != nil {
					errs++
				}
			}
			if frames != 0 || errs == 0 {
				t.Errorf("%d pictures decoded above the limit, %d errors", frames, errs)
			}
		})
	}
	if _, err := New(Codec(99), 0); err == nil {
		t.Error("an unknown codec opened")
	}
}

// FuzzDecode feeds each decoder what a hostile camera could send: real
// units (the seeds), truncated, spliced and flipped by the fuzzer. Nothing
// may crash, and every picture that comes out has the size it claims.
func FuzzDecode(f *testing.F) {
	for _, c := range allCodecs {
		units := stream(f, c)
		for _, i := range []int{0, 1, 5} {
			f.Add(byte(c), units[i])
			f.Add(byte(c), units[i][:len(units[i])/3])
		}
	}
	decs := map[Codec]*Decoder{}
	f.Fuzz(func(t *testing.T, which byte, unit []byte) {
		c := allCodecs[int(which)%len(allCodecs)]
		d := decs[c]
		if d == nil {
			var err error
			if d, err = New(c, 640*480); err != nil {
				t.Fatal(err)
			}
			decs[c] = d // kept across inputs, as a camera's decoder is
		}
		d.Decode(unit, func(w, h int) []byte {
			if w*h > 640*480 {
				panic(fmt.Sprintf("%s: %dx%d", c, w, h))
			}
			return make([]byte, w*h*3)
		})
	})
}

// BenchmarkDecode is the cost of decoding one 1280x720 picture to BGR, per
// codec a camera may send (30 pictures, a keyframe every 10), and for
// H.264 also with swscale converting it, as before libyuv did.
func BenchmarkDecode(b *testing.B) {
	type variant struct {
		name    string
		c       Codec
		swscale bool
	}
	var vs []variant
	for _, c := range allCodecs {
		vs = append(vs, variant{c.String(), c, false})
	}
	vs = append(vs, variant{"H.264-swscale", CodecH264, true})
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			units := streamSized(b, v.c, "1280x720")
			d, err := New(v.c, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			d.swscaleOnly = v.swscale
			n := 0
			for b.Loop() {
				d.Decode(units[n%len(units)], picture)
				n++
			}
		})
	}
}
