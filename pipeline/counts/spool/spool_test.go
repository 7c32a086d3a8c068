package spool

import (
	"errors"
	"fmt"
	"go.uber.org/goleak"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// No test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func fill(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append([]byte("cam"), []byte(fmt.Sprintf("event-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
}

func values(t *testing.T, s *Spool, n int) []string {
	t.Helper()
	recs, err := s.Peek(n)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

func TestSurvivesReopenAndAcks(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 0, 10)
	if err := s.Ack(3); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := values(t, s, 100)
	if len(got) != 7 || got[0] != "event-3" || got[6] != "event-9" {
		t.Fatalf("after reopen: %v", got)
	}
	fill(t, s, 10, 12)
	if got := values(t, s, 100); len(got) != 9 || got[8] != "event-11" {
		t.Fatalf("append after reopen: %v", got)
	}
	if n, _, oldest := s.Stats(); n != 9 || oldest.IsZero() {
		t.Errorf("stats %d %v", n, oldest)
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 1<<20)
	fill(t, s, 0, 5)
	s.Close()
	seg := filepath.Join(dir, "0000000000.seg")
	st, _ := os.Stat(seg)
	// A crash mid-append: the last record is cut short.
	if err := os.Truncate(seg, st.Size()-3); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := values(t, s, 100); len(got) != 4 || got[3] != "event-3" {
		t.Fatalf("after torn tail: %v", got)
	}
	fill(t, s, 5, 6)
	if got := values(t, s, 100); len(got) != 5 || got[4] != "event-5" {
		t.Fatalf("append after cut: %v", got)
	}
}

func TestCorruptRecordStopsScan(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 1<<20)
	fill(t, s, 0, 3)
	s.Close()
	seg := filepath.Join(dir, "0000000000.seg")
	b, _ := os.ReadFile(seg)
	b[len(b)-1] ^= 0xff // flip a bit in the last record's value
	os.WriteFile(seg, b, 0o600)
	s, _ = Open(dir, 1<<20)
	defer s.Close()
	if got := values(t, s, 100); len(got) != 2 {
		t.Fatalf("corrupt record kept: %v", got)
	}
}

func TestFullIsAnErrorNotADrop(t *testing.T) {
	s, _ := Open(t.TempDir(), 200)
	defer s.Close()
	n := 0
	for ; n < 100; n++ {
		if err := s.Append([]byte("k"), make([]byte, 40)); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if n == 0 || n == 100 {
		t.Fatalf("appended %d", n)
	}
	recs, _ := s.Peek(1000)
	if len(recs) != n {
		t.Errorf("%d kept of %d appended", len(recs), n)
	}
	s.Ack(1)
	if err := s.Append([]byte("k"), make([]byte, 40)); err != nil {
		t.Errorf("after ack: %v", err)
	}
}

func TestSegmentsRotateAndAreDeleted(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 64<<20)
	big := make([]byte, 300<<10)
	for i := 0; i < 10; i++ {
		if err := s.Append([]byte("k"), big); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := s.segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	s.Ack(9)
	segs, _ = s.segments()
	if len(segs) != 1 {
		t.Errorf("%d segments left after acking all but the last record", len(segs))
	}
	s.Close()
	s, _ = Open(dir, 64<<20)
	defer s.Close()
	if n, _, _ := s.Stats(); n != 1 {
		t.Errorf("%d records after reopen", n)
	}
}

// flaky is a segment file whose next write stops half-way with ENOSPC, as
// a full disk does, and whose truncate may fail too.
type flaky struct {
	segFile
	failWrites   int
	failTruncate bool
}

func (f *flaky) Write(b []byte) (int, error) {
	if f.failWrites > 0 {
		f.failWrites--
		n, _ := f.segFile.Write(b[:len(b)/2])
		return n, syscall.ENOSPC
	}
	return f.segFile.Write(b)
}

func (f *flaky) Truncate(n int64) error {
	if f.failTruncate {
		return syscall.EIO
	}
	return f.segFile.Truncate(n)
}

// TestFailedWriteLosesNothingAfterIt: a write that fails half-way (disk
// full) leaves no torn bytes for later records to follow, so after a
// restart every record acknowledged as written is there, in order, whether
// the torn bytes could be cut off or the spool had to move to a new
// segment.
func TestFailedWriteLosesNothingAfterIt(t *testing.T) {
	for _, tc := range []struct {
		name         string
		failTruncate bool
	}{{"truncated back", false}, {"fresh segment", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			add := func(v string) error {
				err := s.Append([]byte("k"), []byte(v))
				if err == nil {
					want = append(want, v)
				}
				return err
			}
			for _, v := range []string{"a", "b", "c"} {
				if err := add(v); err != nil {
					t.Fatal(err)
				}
			}
			s.f = &flaky{segFile: s.f, failWrites: 1, failTruncate: tc.failTruncate}
			if err := add("torn-record-that-never-was"); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("failed write: %v", err)
			}
			for _, v := range []string{"d", "e"} {
				if err := add(v); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			s, err = Open(dir, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := values(t, s, 100)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("after restart %v, want %v", got, want)
			}
		})
	}
}
