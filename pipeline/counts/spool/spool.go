// Package spool is a bounded, durable queue on disk for count events that
// could not be sent yet. Events are appended (and fsynced) before they are
// sent, and removed only once the broker acknowledged them, so an outage
// of the broker or a crash of veil loses nothing.
//
// Layout: numbered segment files of length-prefixed, CRC-checked records,
// and a cursor file naming the first unacknowledged record. A record torn
// by a crash mid-write is detected by its CRC at open and cut off (it was
// never acknowledged to anyone).
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Record is one spooled message.
type Record struct {
	Key, Value []byte
	Time       time.Time // when it was spooled
}

// ErrFull is returned by Append when the spool holds MaxBytes already.
var ErrFull = errors.New("spool full")

const (
	headerLen  = 4 + 4 + 8 + 2 // length, crc32, unix nanos, key length
	segmentMax = 1 << 20
	maxRecord  = 1 << 20
)

type entry struct {
	seg  int
	off  int64
	size int64
	time time.Time
	rec  *Record // cached until sent
}

// Spool is safe for one appender and one reader at a time.
type Spool struct {
	dir      string
	maxBytes int64

	mu      sync.Mutex
	entries []entry // unacknowledged, oldest first
	bytes   int64
	seg     int // segment being appended to
	f       segFile
	// open opens a segment for appending; tests replace it to make writes
	// fail half-way, as a full disk does.
	open    func(path string) (segFile, error)
	segSize int64
	closed  bool
}

// Open opens or creates the spool in dir, holding at most maxBytes of
// unacknowledged records.
func Open(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes}
	curSeg, curOff, err := s.readCursor()
	if err != nil {
		return nil, err
	}
	segs, err := s.segments()
	if err != nil {
		return nil, err
	}
	for _, n := range segs {
		if n < curSeg {
			os.Remove(s.segPath(n)) // fully acknowledged
			continue
		}
		start := int64(0)
		if n == curSeg {
			start = curOff
		}
		if err := s.scan(n, start); err != nil {
			return nil, err
		}
		s.seg = n
	}
	if len(segs) == 0 || s.seg < curSeg {
		s.seg = curSeg
	}
	if err := s.openAppend(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spool) segPath(n int) string { return filepath.Join(s.dir, fmt.Sprintf("%010d.seg", n)) }

func (s *Spool) segments() ([]int, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.dir, err)
	}
	var out []int
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(name); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out, nil
}

// scan indexes the records of segment n from offset start, truncating the
// file at the first torn or corrupt record.
func (s *Spool) scan(n int, start int64) error {
	path := s.segPath(n)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReader(f)
	off := start
	for {
		rec, size, err := readRecord(r)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// A torn tail from a crash mid-append: never acknowledged, cut it.
			return f.Truncate(off)
		}
		s.entries = append(s.entries, entry{seg: n, off: off, size: size, time: rec.Time})
		s.bytes += size
		off += size
	}
}

func readRecord(r io.Reader) (*Record, int64, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, 0, errors.New("torn header")
		}
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(h[0:4])
	sum := binary.BigEndian.Uint32(h[4:8])
	ts := int64(binary.BigEndian.Uint64(h[8:16]))
	kl := binary.BigEndian.Uint16(h[16:18])
	if n > maxRecord || uint32(kl) > n {
		return nil, 0, errors.New("bad length")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, 0, errors.New("torn body")
	}
	if crc32.ChecksumIEEE(append(h[8:18:18], body...)) != sum {
		return nil, 0, errors.New("bad checksum")
	}
	return &Record{Key: body[:kl], Value: body[kl:], Time: time.Unix(0, ts)}, int64(headerLen) + int64(n), nil
}

// segFile is what the spool needs of a segment file open for appending.
type segFile interface {
	Write([]byte) (int, error)
	Sync() error
	Truncate(int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

func openSegment(path string) (segFile, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

func (s *Spool) openAppend() error {
	if s.open == nil {
		s.open = openSegment
	}
	f, err := s.open(s.segPath(s.seg))
	if err != nil {
		return fmt.Errorf("spool %s: %w", s.dir, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.segSize = f, st.Size()
	return nil
}

// Append writes rec durably (fsync) at the end. It returns ErrFull, and
// writes nothing, when the spool holds maxBytes already.
func (s *Spool) Append(key, value []byte) error {
	if len(key) > 1<<15 || len(key)+len(value) > maxRecord {
		return fmt.Errorf("spool: record of %d bytes too large", len(key)+len(value))
	}
	now := time.Now()
	body := append(append([]byte(nil), key...), value...)
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(body)))
	binary.BigEndian.PutUint64(h[8:16], uint64(now.UnixNano()))
	binary.BigEndian.PutUint16(h[16:18], uint16(len(key)))
	binary.BigEndian.PutUint32(h[4:8], crc32.ChecksumIEEE(append(h[8:18:18], body...)))
	size := int64(headerLen + len(body))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("spool: closed")
	}
	if s.bytes+size > s.maxBytes {
		return ErrFull
	}
	if s.segSize >= segmentMax {
		s.f.Close()
		s.seg++
		if err := s.openAppend(); err != nil {
			return err
		}
	}
	_, err := s.f.Write(append(h[:], body...))
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// Whatever part of the record reached the file must go: records
		// appended after a torn one would be cut off with it at the next
		// start. Truncate back to the last good record, or, if even that
		// fails, leave this segment and go on in a fresh one.
		if terr := s.f.Truncate(s.segSize); terr != nil {
			s.f.Close()
			s.seg++
			if oerr := s.openAppend(); oerr != nil {
				return fmt.Errorf("spool %s: %w (and no fresh segment: %v)", s.dir, err, oerr)
			}
		}
		return fmt.Errorf("spool %s: %w", s.dir, err)
	}
	s.entries = append(s.entries, entry{seg: s.seg, off: s.segSize, size: size, time: now,
		rec: &Record{Key: key, Value: value, Time: now}})
	s.segSize += size
	s.bytes += size
	return nil
}

// Peek returns up to max of the oldest unacknowledged records, without
// removing them.
func (s *Spool) Peek(max int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(max, len(s.entries))
	out := make([]Record, 0, n)
	for i := 0; i < n; i++ {
		e := &s.entries[i]
		if e.rec == nil {
			rec, err := s.load(*e)
			if err != nil {
				return out, err
			}
			e.rec = rec
		}
		out = append(out, *e.rec)
	}
	return out, nil
}

func (s *Spool) load(e entry) (*Record, error) {
	f, err := os.Open(s.segPath(e.seg))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	rec, _, err := readRecord(io.NewSectionReader(f, e.off, e.size))
	if err != nil {
		return nil, fmt.Errorf("spool %s at %d: %w", s.segPath(e.seg), e.off, err)
	}
	return rec, nil
}

// Ack removes the n oldest records (the broker has them) and persists the
// cursor, deleting segments that hold nothing unacknowledged.
func (s *Spool) Ack(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, len(s.entries))
	if n == 0 {
		return nil
	}
	for _, e := range s.entries[:n] {
		s.bytes -= e.size
	}
	last := s.entries[n-1]
	s.entries = append(s.entries[:0], s.entries[n:]...)
	seg, off := last.seg, last.off+last.size
	if len(s.entries) > 0 {
		seg, off = s.entries[0].seg, s.entries[0].off
	}
	if err := s.writeCursor(seg, off); err != nil {
		return err
	}
	segs, _ := s.segments()
	for _, k := range segs {
		if k < seg {
			os.Remove(s.segPath(k))
		}
	}
	return nil
}

func (s *Spool) cursorPath() string { return filepath.Join(s.dir, "cursor") }

func (s *Spool) readCursor() (int, int64, error) {
	b, err := os.ReadFile(s.cursorPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("spool %s: %w", s.dir, err)
	}
	var seg int
	var off int64
	if _, err := fmt.Sscanf(string(b), "%d %d", &seg, &off); err != nil || seg < 0 || off < 0 {
		return 0, 0, fmt.Errorf("spool %s: corrupt cursor %q", s.dir, b)
	}
	return seg, off, nil
}

func (s *Spool) writeCursor(seg int, off int64) error {
	tmp := s.cursorPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool %s: %w", s.dir, err)
	}
	if _, err := fmt.Fprintf(f, "%d %d\n", seg, off); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return os.Rename(tmp, s.cursorPath())
}

// Stats are the unacknowledged records, their bytes and the oldest's age.
func (s *Spool) Stats() (records int, bytes int64, oldest time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) > 0 {
		oldest = s.entries[0].time
	}
	return len(s.entries), s.bytes, oldest
}

// Close closes the files; records stay on disk for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}
