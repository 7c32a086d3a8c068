package ingest

import (
	"bytes"
	"encoding/binary"

	"github.com/veilproject/veil/frame"
)

// exifOrientation reads the EXIF orientation (1-8) of a JPEG, or 1 when it
// has none or it cannot be read: phones store portrait photos sideways and
// say so here, and Go's JPEG decoder ignores it.
func exifOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return 1
		}
		marker := b[i+1]
		if marker == 0xDA || marker == 0xD9 { // image data: no EXIF before it
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// tiffOrientation finds tag 0x0112 in the first IFD of a TIFF block.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	ifd := int(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > len(t) {
		return 1
	}
	entries := int(bo.Uint16(t[ifd:]))
	for e := 0; e < entries; e++ {
		o := ifd + 2 + 12*e
		if o+12 > len(t) {
			return 1
		}
		if bo.Uint16(t[o:]) == 0x0112 {
			if v := int(bo.Uint16(t[o+8:])); v >= 1 && v <= 8 {
				return v
			}
			return 1
		}
	}
	return 1
}

// orient turns a decoded picture upright for EXIF orientation o (1-8):
// the pixel that o says is at the top left ends up there.
func orient(r *frame.Raw, o int) *frame.Raw {
	if o <= 1 || o > 8 {
		return r
	}
	w, h := r.Width, r.Height
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := frame.NewRaw(r.Meta, ow, oh)
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			var sx, sy int // where output (x, y) comes from
			switch o {
			case 2: // mirrored
				sx, sy = w-1-x, y
			case 3: // upside down
				sx, sy = w-1-x, h-1-y
			case 4: // mirrored upside down
				sx, sy = x, h-1-y
			case 5: // mirrored, turned a quarter left
				sx, sy = y, x
			case 6: // turned a quarter left: turn it right
				sx, sy = y, h-1-x
			case 7: // mirrored, turned a quarter right
				sx, sy = w-1-y, h-1-x
			case 8: // turned a quarter right: turn it left
				sx, sy = w-1-y, x
			}
			copy(out.Pix[(y*ow+x)*3:(y*ow+x)*3+3], r.Pix[(sy*w+sx)*3:])
		}
	}
	clear(r.Pix) // the sideways copy held raw pixels too
	return out
}
