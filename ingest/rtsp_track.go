package ingest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmjpeg"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"

	"github.com/veilproject/veil/ingest/decode"
)

// videoTrack is the one video track veil pulls from a camera, with what
// differs between codecs: depacketizing, spotting a keyframe, and turning
// a unit into the bytes the decoder takes. Everything else (queueing,
// drop-and-resync, metrics) is the same for every codec.
type videoTrack struct {
	codec decode.Codec
	medi  *description.Media
	forma format.Format
	// depacketize returns a whole unit (the NAL units of an access unit,
	// or one JPEG), nil and errMore while it needs more packets.
	depacketize func(*rtp.Packet) ([][]byte, error)
	// keyframe reports whether decoding can start at the unit.
	keyframe func([][]byte) bool
	// bitstream is the decoder's input for a unit; for a keyframe without
	// in-band parameter sets, those of the SDP go in front.
	bitstream func([][]byte) ([]byte, error)
}

// errMore: the depacketizer needs more packets (not an error of the stream).
var errMore = errors.New("more packets needed")

// pickTrack chooses the camera's video track: H.264 first (the cheapest to
// decode), then H.265 (the main stream default of most office cameras),
// then MJPEG.
func pickTrack(desc *description.Session) (*videoTrack, error) {
	var f264 *format.H264
	if m := desc.FindFormat(&f264); m != nil {
		d, err := f264.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return &videoTrack{codec: decode.CodecH264, medi: m, forma: f264,
			depacketize: func(p *rtp.Packet) ([][]byte, error) {
				au, err := d.Decode(p)
				return au, more(err, rtph264.ErrMorePacketsNeeded, rtph264.ErrNonStartingPacketAndNoPrevious)
			},
			keyframe: func(au [][]byte) bool { return nonEmpty(au) && h264.IsRandomAccess(au) },
			bitstream: func(au [][]byte) ([]byte, error) {
				sps, pps := f264.SafeParams()
				if h264.IsRandomAccess(au) && !hasNALU(au, func(n []byte) bool { return h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS }) && sps != nil && pps != nil {
					au = append([][]byte{sps, pps}, au...)
				}
				return h264.AnnexB(au).Marshal()
			}}, nil
	}
	var f265 *format.H265
	if m := desc.FindFormat(&f265); m != nil {
		d, err := f265.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return &videoTrack{codec: decode.CodecH265, medi: m, forma: f265,
			depacketize: func(p *rtp.Packet) ([][]byte, error) {
				au, err := d.Decode(p)
				return au, more(err, rtph265.ErrMorePacketsNeeded, rtph265.ErrNonStartingPacketAndNoPrevious)
			},
			keyframe: func(au [][]byte) bool { return nonEmpty(au) && h265.IsRandomAccess(au) },
			bitstream: func(au [][]byte) ([]byte, error) {
				vps, sps, pps := f265.SafeParams()
				if h265.IsRandomAccess(au) && !hasNALU(au, func(n []byte) bool { return h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT }) && vps != nil && sps != nil && pps != nil {
					au = append([][]byte{vps, sps, pps}, au...)
				}
				// Annex-B framing is the same start code for H.265.
				return h264.AnnexB(au).Marshal()
			}}, nil
	}
	var fjpeg *format.MJPEG
	if m := desc.FindFormat(&fjpeg); m != nil {
		d, err := fjpeg.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return &videoTrack{codec: decode.CodecMJPEG, medi: m, forma: fjpeg,
			depacketize: func(p *rtp.Packet) ([][]byte, error) {
				img, err := d.Decode(p)
				if err != nil {
					return nil, more(err, rtpmjpeg.ErrMorePacketsNeeded, rtpmjpeg.ErrNonStartingPacketAndNoPrevious)
				}
				return [][]byte{img}, nil
			},
			keyframe:  nonEmpty, // every JPEG stands alone
			bitstream: func(u [][]byte) ([]byte, error) { return u[0], nil },
		}, nil
	}
	var have []string
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			have = append(have, fmt.Sprintf("%s %s", m.Type, f.Codec()))
		}
	}
	return nil, fmt.Errorf("the stream has no H.264, H.265 or MJPEG video track (it has: %s)", strings.Join(have, ", "))
}

// more maps the depacketizer's "not yet" errors to errMore.
func more(err error, notYet ...error) error {
	for _, e := range notYet {
		if errors.Is(err, e) {
			return errMore
		}
	}
	return err
}

func nonEmpty(u [][]byte) bool {
	for _, n := range u {
		if len(n) == 0 {
			return false
		}
	}
	return len(u) > 0
}

func hasNALU(au [][]byte, is func([]byte) bool) bool {
	for _, n := range au {
		if len(n) > 0 && is(n) {
			return true
		}
	}
	return false
}
