package live

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/ingest/decode"
	"github.com/veilproject/veil/pipeline/output/encode"
)

// BenchmarkLiveViewers: one 1280x720 15 fps camera watched by 1 and by 10
// WebRTC viewers, encoded at the recordings' default preset. One viewer
// runs in this process and decodes what it gets; the others run in a child
// process (a "viewer farm", the test binary itself) so that their
// receiving, which browsers would do elsewhere, is not counted. Per N:
// this process's CPU (cores, from getrusage), and the glass-to-glass
// latency from the frame's making (before blur) to its decoded picture,
// frames being identified by a barcode drawn into them. The two cases are
// run alternately, three times each; medians. Run with -benchtime 1x.
func BenchmarkLiveViewers(b *testing.B) {
	for b.Loop() {
		cpu := map[int][]float64{}
		p50s, p99s := map[int][]float64{}, map[int][]float64{}
		got := map[int]int{}
		for range 3 {
			for _, n := range []int{1, 10} {
				c, p50, p99, dec := liveRun(b, n, 6*time.Second)
				cpu[n] = append(cpu[n], c)
				p50s[n], p99s[n] = append(p50s[n], p50), append(p99s[n], p99)
				got[n] += dec
			}
		}
		med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
		var rows []string
		base := med(cpu[1])
		for _, n := range []int{1, 10} {
			c := med(cpu[n])
			rows = append(rows, fmt.Sprintf("| %d | %.3f | %+.1f%% | %.0f / %.0f | %d |", n, c, 100*(c/base-1), med(p50s[n])*1000, med(p99s[n])*1000, got[n]))
			b.ReportMetric(c, fmt.Sprintf("cores/%dviewers", n))
			b.ReportMetric(med(p50s[n])*1000, fmt.Sprintf("g2g-p50-ms/%dviewers", n))
		}
		fmt.Printf("\n| viewers | veil CPU cores (median of 3) | vs 1 viewer | glass-to-glass p50 / p99 ms | pictures decoded (3 runs) |\n|---|---|---|---|---|\n%s\n", strings.Join(rows, "\n"))
	}
}

// TestViewerFarm is the benchmark's child process: it watches the camera
// at $VEIL_FARM_URL with $VEIL_FARM_N pion viewers until killed. It is
// skipped in a normal test run.
func TestViewerFarm(t *testing.T) {
	url := os.Getenv("VEIL_FARM_URL")
	if url == "" {
		t.Skip("the live-view benchmark's viewer farm")
	}
	n, _ := strconv.Atoi(os.Getenv("VEIL_FARM_N"))
	for range n {
		if _, err := newViewer(url, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("watching")
	select {}
}

const bw, bh = 1280, 720

// barcode draws seq as 16 blocks of 48x48 (white 1, black 0) at the top
// left, big enough to survive compression.
func barcode(pix []byte, seq uint64) {
	for bit := 0; bit < 16; bit++ {
		v := byte(16)
		if seq>>bit&1 == 1 {
			v = 240
		}
		for y := 0; y < 48; y++ {
			for x := bit * 48; x < bit*48+48; x++ {
				o := (y*bw + x) * 3
				pix[o], pix[o+1], pix[o+2] = v, v, v
			}
		}
	}
}

func readBarcode(bgr []byte) uint64 {
	var seq uint64
	for bit := 0; bit < 16; bit++ {
		o := (24*bw + bit*48 + 24) * 3
		if bgr[o] > 128 {
			seq |= 1 << bit
		}
	}
	return seq
}

// newViewer is a pion viewer of url's camera; with decode, each picture
// it gets is decoded and handed to onPicture.
func newViewer(url string, decodeIt bool, onPicture func([]byte)) (*webrtc.PeerConnection, error) {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		sb := samplebuilder.New(128, &codecs.H264Packet{}, 90000)
		var dec *decode.Decoder
		if decodeIt {
			dec, _ = decode.New(decode.CodecH264, 0)
			defer dec.Close()
		}
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			sb.Push(p)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				if dec != nil {
					var bgr []byte
					if ok, _ := dec.Decode(s.Data, func(w, h int) []byte { bgr = make([]byte, w*h*3); return bgr }); ok {
						onPicture(bgr)
					}
				}
			}
		}
	})
	_, err = connect(pc, url, "")
	return pc, err
}

func liveRun(b *testing.B, n int, d time.Duration) (cpu, p50, p99 float64, decoded int) {
	m, _ := NewMetrics(prometheus.NewRegistry())
	st := NewStream(StreamConfig{Camera: "lobby", Preset: encode.DefaultPreset}, StreamDeps{Metrics: m})
	w := &WHEP{Streams: map[string]*Stream{"lobby": st}, IncludeLoopback: true, MaxPerCamera: 20, Logger: slog.New(slog.DiscardHandler), Metrics: m,
		Authorize: func(r *http.Request, c string) (Viewer, bool) { return Viewer{Who: "bench"}, true }}
	srv := httptest.NewServer(w)
	defer srv.Close()
	bm, _ := blur.NewMetrics(prometheus.NewRegistry())
	bs, _ := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: bm})
	bs.WarmUp(context.Background(), bw, bh)
	defer bs.Close(context.Background())

	var mu sync.Mutex
	made := map[uint64]time.Time{}
	var lat []float64
	onPicture := func(bgr []byte) {
		seq := readBarcode(bgr)
		mu.Lock()
		if t0, ok := made[seq]; ok {
			lat = append(lat, time.Since(t0).Seconds())
			delete(made, seq)
		}
		mu.Unlock()
	}
	pc, err := newViewer(srv.URL, true, onPicture)
	if err != nil {
		b.Fatal(err)
	}
	pcs := []*webrtc.PeerConnection{pc}
	if n > 1 {
		farm := exec.Command(os.Args[0], "-test.run=^TestViewerFarm$", "-test.v")
		farm.Env = append(os.Environ(), "VEIL_FARM_URL="+srv.URL, fmt.Sprintf("VEIL_FARM_N=%d", n-1))
		out, _ := farm.StdoutPipe()
		if err := farm.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { farm.Process.Kill(); farm.Wait() }()
		sc := bufio.NewScanner(out)
		for sc.Scan() && !strings.Contains(sc.Text(), "watching") {
		}
		go func() {
			for sc.Scan() {
			}
		}()
	}
	defer func() {
		for _, pc := range pcs {
			pc.Close()
		}
		w.Close()
		st.Close(context.Background())
	}()

	warm := 2 * time.Second
	tick := time.NewTicker(time.Second / 15)
	defer tick.Stop()
	t0 := time.Now()
	var ru0 syscall.Rusage
	measuring := false
	for i := uint64(0); time.Since(t0) < warm+d; i++ {
		<-tick.C
		if !measuring && time.Since(t0) >= warm {
			measuring = true
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			mu.Lock()
			lat = lat[:0]
			mu.Unlock()
		}
		now := time.Now()
		pts := time.Duration(i) * time.Second / 15
		raw := frame.NewRaw(frame.Meta{Camera: "lobby", Seq: i, PTS: pts, Captured: now}, bw, bh)
		for y := 64; y < bh; y += 2 { // a moving texture, so pictures differ
			row := raw.Pix[y*bw*3 : (y+1)*bw*3]
			for x := range row {
				row[x] = byte(x + y + int(i)*7)
			}
		}
		barcode(raw.Pix, i&0xffff)
		mu.Lock()
		made[i&0xffff] = now
		mu.Unlock()
		f, err := bs.Obscure(context.Background(), raw)
		if err == nil {
			st.Write(f)
		}
	}
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	cpu = (tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)) / d.Seconds()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	sort.Float64s(lat)
	if len(lat) == 0 {
		return cpu, 0, 0, 0
	}
	return cpu, lat[len(lat)/2], lat[len(lat)*99/100], len(lat)
}
