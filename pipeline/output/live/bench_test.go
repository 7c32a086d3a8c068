package live

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
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
	"github.com/veilproject/veil/ingest/decode"
	"github.com/veilproject/veil/pipeline/frame"
)

// BenchmarkLiveViewers: one 1280x720 15 fps camera watched by 1 and by 10
// WebRTC viewers (pion peers on loopback), encoded at the recordings'
// default preset. Per N: the process's CPU (cores, from getrusage) and,
// for one viewer that decodes what it gets, the glass-to-glass latency
// from the frame's making (before blur) to its decoded picture, frames
// being identified by a barcode drawn into them. The viewers' own
// receiving runs in this process too, so the CPU figure for 10 includes
// what ten browsers would spend elsewhere. Run with -benchtime 1x.
func BenchmarkLiveViewers(b *testing.B) {
	for b.Loop() {
		var rows []string
		var base float64
		for _, n := range []int{1, 10} {
			cpu, p50, p99, got := liveRun(b, n, 8*time.Second)
			if n == 1 {
				base = cpu
			}
			rows = append(rows, fmt.Sprintf("| %d | %.3f | %+.1f%% | %.0f / %.0f | %d |", n, cpu, 100*(cpu/base-1), p50*1000, p99*1000, got))
			b.ReportMetric(cpu, fmt.Sprintf("cores/%dviewers", n))
			b.ReportMetric(p50*1000, fmt.Sprintf("g2g-p50-ms/%dviewers", n))
		}
		fmt.Printf("\n| viewers | CPU cores | vs 1 viewer | glass-to-glass p50 / p99 ms | pictures decoded |\n|---|---|---|---|---|\n%s\n", strings.Join(rows, "\n"))
	}
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

func liveRun(b *testing.B, n int, d time.Duration) (cpu, p50, p99 float64, decoded int) {
	m, _ := NewMetrics(prometheus.NewRegistry())
	st := NewStream("lobby", "veryfast", nil, m, nil)
	w := &WHEP{Streams: map[string]*Stream{"lobby": st}, IncludeLoopback: true, MaxPerCamera: 20, Logger: slog.New(slog.DiscardHandler), Metrics: m,
		Authorize: func(r *http.Request, c string) (Viewer, bool) { return Viewer{Who: "bench"}, true }}
	srv := httptest.NewServer(w)
	defer srv.Close()
	bm, _ := blur.NewMetrics(prometheus.NewRegistry())
	bs, _ := blur.New(blur.Config{}, blur.Deps{Detector: noFaces{}, Metrics: bm})
	bs.WarmUp(context.Background(), bw, bh)
	defer bs.Close(context.Background())

	var mu sync.Mutex
	made := map[uint64]time.Time{}
	var lat []float64
	var pcs []*webrtc.PeerConnection
	for i := 0; i < n; i++ {
		pc, _ := webrtc.NewPeerConnection(webrtc.Configuration{})
		pcs = append(pcs, pc)
		pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		measure := i == 0
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			sb := samplebuilder.New(128, &codecs.H264Packet{}, 90000)
			var dec *decode.Decoder
			if measure {
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
					if dec == nil {
						continue
					}
					dec.Decode(s.Data, func(w, h int, bgr []byte) {
						seq := readBarcode(bgr)
						mu.Lock()
						if t0, ok := made[seq]; ok {
							lat = append(lat, time.Since(t0).Seconds())
							delete(made, seq)
						}
						mu.Unlock()
					})
				}
			}
		})
		offer, _ := pc.CreateOffer(nil)
		gathered := webrtc.GatheringCompletePromise(pc)
		pc.SetLocalDescription(offer)
		<-gathered
		resp, err := http.Post(srv.URL+"/whep/lobby", "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
		if err != nil {
			b.Fatal(err)
		}
		ans, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("viewer %d: %d %s", i, resp.StatusCode, ans)
		}
		pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ans)})
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
