package signing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	hexA = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	hexB = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

func TestSignVerify(t *testing.T) {
	a, _ := ParseKey(hexA)
	b, _ := ParseKey(hexB + "\n")
	v := []byte(`{"schema":"veil.footfall.v1","site":"s1","camera":"lobby"}`)
	sig := Sign(a, v)
	cases := []struct {
		name  string
		keys  []Key
		value []byte
		sig   string
		want  bool
	}{
		{"its key", []Key{a}, v, sig, true},
		{"one of two keys, while rotating", []Key{b, a}, v, sig, true},
		{"another key", []Key{b}, v, sig, false},
		{"no key", nil, v, sig, false},
		{"value changed", []Key{a}, append([]byte(nil), strings.Replace(string(v), "lobby", "hall", 1)...), sig, false},
		{"no signature", []Key{a}, v, "", false},
		{"no version", []Key{a}, v, strings.TrimPrefix(sig, "v1="), false},
		{"truncated", []Key{a}, v, sig[:len(sig)-2], false},
		{"not hex", []Key{a}, v, "v1=zz" + sig[5:], false},
	}
	for _, c := range cases {
		if got := Verify(c.keys, c.value, c.sig); got != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, c := range []struct{ text, err string }{
		{hexA, ""},
		{"  " + hexA + "\n", ""},
		{hexA[:62], "31 bytes"},
		{"not a key at all, not a key at all, not a key at all, not a key!", "not hex"},
		{"", "0 bytes"},
	} {
		_, err := ParseKey(c.text)
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseKey(%q) = %v, want %q", c.text, err, c.err)
		}
	}
}

func writeKey(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

func TestKeyringRotation(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, filepath.Join(dir, "s1.key"), hexA, 0o600)
	writeKey(t, filepath.Join(dir, "s.2.key"), hexB, 0o600) // a site id with a dot
	r, err := OpenKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := []byte("event")
	a, _ := ParseKey(hexA)
	b, _ := ParseKey(hexB)
	if !Verify(r.Keys("s1"), v, Sign(a, v)) || Verify(r.Keys("s1"), v, Sign(b, v)) || !Verify(r.Keys("s.2"), v, Sign(b, v)) {
		t.Fatalf("keys: %v", r.Sites())
	}
	// Rotation: the new key is added beside the old; both are taken.
	writeKey(t, filepath.Join(dir, "s1@2027-01.key"), hexB, 0o600)
	now := time.Now().Add(time.Second)
	os.Chtimes(dir, now, now)
	r.checked = time.Time{}
	if !Verify(r.Keys("s1"), v, Sign(a, v)) || !Verify(r.Keys("s1"), v, Sign(b, v)) {
		t.Fatalf("after adding a key, s1 has %d keys", len(r.Keys("s1")))
	}
	// A key rewritten in place (no file added) is read again too.
	writeKey(t, filepath.Join(dir, "s.2.key"), hexA, 0o600)
	now = now.Add(time.Second)
	os.Chtimes(filepath.Join(dir, "s.2.key"), now, now)
	r.checked = time.Time{}
	if !Verify(r.Keys("s.2"), v, Sign(a, v)) || Verify(r.Keys("s.2"), v, Sign(b, v)) {
		t.Fatal("a key rewritten in place was not read again")
	}
	// A bad file keeps the keys loaded before, and says why.
	writeKey(t, filepath.Join(dir, "s3.key"), "short", 0o600)
	now = now.Add(time.Second)
	os.Chtimes(dir, now, now)
	r.checked = time.Time{}
	if len(r.Keys("s1")) != 2 || r.Err() == nil || !strings.Contains(r.Err().Error(), "s3.key") {
		t.Fatalf("after a bad file: %d keys, err %v", len(r.Keys("s1")), r.Err())
	}
}

func TestKeyringRefuses(t *testing.T) {
	for _, c := range []struct {
		name, file, text string
		mode             os.FileMode
		err              string
	}{
		{"empty", "", "", 0, "no SITE.key"},
		{"readable by others", "s1.key", hexA, 0o644, "chmod 600"},
		{"bad site", "-x.key", hexA, 0o600, "site"},
		{"short", "s1.key", "abcd", 0o600, "2 bytes"},
	} {
		dir := t.TempDir()
		if c.file != "" {
			writeKey(t, filepath.Join(dir, c.file), c.text, c.mode)
		}
		if _, err := OpenKeyring(dir); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	a, _ := ParseKey(hexA)
	f.Add([]byte("event"), Sign(a, []byte("event")))
	f.Add([]byte(""), "v1=")
	f.Fuzz(func(t *testing.T, value []byte, sig string) {
		if Verify([]Key{a}, value, sig) && !strings.EqualFold(sig, Sign(a, value)) {
			t.Fatalf("accepted %q for %q", sig, value)
		}
	})
}
