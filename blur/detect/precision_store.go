package detect

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// What precision: auto measured is kept on disk, so that only the first
// process on a machine pays for the measurement: compiling three networks
// and timing each, about 1.4 s on the 2-core Intel Xeon, which was most
// of the time `veil anonymize` took on one photo (2.66 s measuring
// against 1.25-1.29 s remembering). A choice is reused only for the same
// CPU (its model name and instruction-set flags) and core count, thread
// count, runtime (the wheel's checksum) and model files (their SHA-256),
// measured the same way (precisionMethod): any of those changed, it is
// measured again. A remembered choice that is stale in speed is still
// safe for privacy: every candidate keeps the recall floors with its
// threshold margin.

// precisionMethod names how choosePrecision measures; a change to the
// probe, the runs or the rule must change it, so that choices made the
// old way are measured again.
const precisionMethod = "probe320-fastest5-gain0.9-v1"

// maxRememberedChoices bounds the file: one entry per thread count,
// runtime and model set seen, the oldest dropped first.
const maxRememberedChoices = 16

// precisionFile is where choices are kept; a variable so that tests can
// keep theirs apart.
var precisionFile = func() string {
	return filepath.Join(filepath.Dir(DefaultModelDir()), "precision.json")
}

// precisionKey is what a measured choice holds for.
type precisionKey struct {
	CPU     string `json:"cpu"`     // model name and a hash of the flags
	Cores   int    `json:"cores"`   // the CPUs this process may use
	Threads int    `json:"threads"` // as configured (0: the runtime's choice)
	Runtime string `json:"runtime"` // the runtime's directory and wheel checksum
	Model   string `json:"model"`   // SHA-256 of the f32 model
	Int8    string `json:"int8"`    // SHA-256 of the int8 model, or "none"
	Method  string `json:"method"`
}

type rememberedChoice struct {
	Key    precisionKey    `json:"key"`
	Choice PrecisionChoice `json:"choice"`
}

// cpuIdentity is the CPU's model name and a hash of its flags from
// /proc/cpuinfo, or "" where that cannot be read (nothing is then kept:
// a choice must not follow a disk image onto another machine unchecked).
func cpuIdentity() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	var name, flags string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && (name == "" || flags == "") {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			name = strings.TrimSpace(v)
		case "flags":
			flags = strings.TrimSpace(v)
		}
	}
	if name == "" || flags == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(flags))
	return name + " flags:" + hex.EncodeToString(sum[:8])
}

// newPrecisionKey is the key for a measurement with these inputs, or
// false where the CPU or runtime cannot be identified.
func newPrecisionKey(libDir string, model, int8Model []byte, threads int) (precisionKey, bool) {
	cpu := cpuIdentity()
	wheel, err := os.ReadFile(filepath.Join(libDir, ".wheel-sha256"))
	if cpu == "" || err != nil {
		return precisionKey{}, false
	}
	abs, err := filepath.Abs(libDir)
	if err != nil {
		abs = libDir
	}
	sum := sha256.Sum256(model)
	k := precisionKey{CPU: cpu, Cores: runtime.NumCPU(), Threads: threads, Runtime: abs + " " + strings.TrimSpace(string(wheel)),
		Model: hex.EncodeToString(sum[:]), Method: precisionMethod}
	if int8Model != nil {
		s := sha256.Sum256(int8Model)
		k.Int8 = hex.EncodeToString(s[:])
	} else {
		// Not why: the reason names the model's path, and a key per path
		// made each test's temporary directory an entry of its own,
		// pushing the machine's real choices out of the file. Without an
		// int8 model the same two candidates are measured, whatever the
		// reason.
		k.Int8 = "none"
	}
	return k, true
}

// readChoices reads the file of remembered choices; a missing file is
// none, and so is an unreadable one (it is then rewritten whole).
func readChoices(path string) ([]rememberedChoice, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []rememberedChoice
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// recallChoice finds the choice measured for k.
func recallChoice(path string, k precisionKey) (rememberedChoice, bool, error) {
	all, err := readChoices(path)
	if err != nil {
		return rememberedChoice{}, false, err
	}
	for _, c := range all {
		if c.Key == k && validPrecision(c.Choice.Precision) {
			return c, true, nil
		}
	}
	return rememberedChoice{}, false, nil
}

func validPrecision(p string) bool {
	return p == "f32" || p == "bf16" || p == "f16" || p == "int8"
}

// rememberChoice adds c to the file (replacing one for the same key), written
// to a temporary file and renamed, so that a reader never sees half of
// it and two processes measuring at once leave one whole file.
func rememberChoice(path string, c rememberedChoice) error {
	all, err := readChoices(path)
	if err != nil {
		all = nil // unreadable: start it again
	}
	kept := []rememberedChoice{c}
	for _, o := range all {
		if o.Key != c.Key && len(kept) < maxRememberedChoices {
			kept = append(kept, o)
		}
	}
	b, err := json.MarshalIndent(kept, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".precision-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
