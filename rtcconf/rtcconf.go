// Package rtcconf is what veil's two WebRTC endpoints share: publishers
// pushing video in (WHIP, in ingest) and viewers watching obscured video
// (WHEP, in pipeline/output/live). The network settings of a connection,
// the check of an offer from outside, bearer tokens, session ids.
package rtcconf

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// SettingEngine is a connection's network settings: UDP over IPv4; host
// candidates only on ips when given; loopback candidates when asked (tests
// between local peers: browsers ignore them).
func SettingEngine(ips []string, loopback bool) webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
	}
	if len(ips) > 0 {
		allowed := map[string]bool{}
		for _, ip := range ips {
			allowed[ip] = true
		}
		se.SetIPFilter(func(ip net.IP) bool { return allowed[ip.String()] })
	}
	return se
}

// ParseOffer checks an SDP offer from outside: it must parse and carry a
// video section. The error says why not.
func ParseOffer(body []byte) error {
	var d sdp.SessionDescription
	if err := d.Unmarshal(body); err != nil {
		return fmt.Errorf("malformed SDP: %w", err)
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "video" {
			return nil
		}
	}
	return errors.New("the offer has no video section")
}

// Bearer reports whether req carries "Authorization: Bearer {token}",
// compared in constant time; an empty token admits nobody.
func Bearer(req *http.Request, token string) bool {
	got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// NewID is a session id: 96 random bits, hex.
func NewID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// gatherWait bounds how long an answer waits for ICE gathering.
const gatherWait = 5 * time.Second

// Answer sets offer as pc's remote description, makes and sets the answer,
// and waits (at most gatherWait) for ICE gathering, so that the answer
// carries every candidate: WHIP and WHEP here send no trickle. It returns
// the answer's SDP, or an error that says whether the offer was refused
// or no answer could be made (both the peer's fault: a 400).
func Answer(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("offer refused: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	answer, err := pc.CreateAnswer(nil)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		return "", fmt.Errorf("cannot answer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(gatherWait):
	}
	return pc.LocalDescription().SDP, nil
}
