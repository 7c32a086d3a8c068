package rtcconf

import (
	"testing"
)

func TestParseOffer(t *testing.T) {
	for _, tc := range []struct {
		name, sdp string
		ok        bool
	}{
		{"video", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n", true},
		{"audio only", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", false},
		{"garbage", "v=0\r\nthis is not sdp", false},
		{"empty", "", false},
	} {
		if err := ParseOffer([]byte(tc.sdp)); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if a, b := NewID(), NewID(); a == b || len(a) != 24 {
		t.Errorf("ids %s %s", a, b)
	}
}

// FuzzParseOffer: whatever a publisher or a viewer posts, the SDP check
// never panics.
func FuzzParseOffer(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n"))
	f.Add([]byte("v=0\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) { ParseOffer(b) })
}
