package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Int8Model is the int8 CenterFace scripts/quantize-model.sh makes in the
// model directory from the checked f32 model (post-training quantization,
// NNCF, calibrated on pictures that are not the recall test's).
const Int8Model = "centerface-int8.onnx"

// Int8Recipe names how the int8 model is made; the script writes it into
// the model's checksum file, and a file made another way is refused.
const Int8Recipe = "nncf-3.4.0-vtest128-faceapi12-v2"

// Int8Margin lowers the score threshold when the int8 model runs: its
// scores are lower than f32's. The margin is half again the furthest
// below the threshold that int8 scored a box f32 scored at or above it,
// on the labelled photos and the ~16 px set and on 14 unlabelled pictures
// (Megamind frames, insightface's sample faces, vtest frames): with it
// int8 finds every face f32 finds on both
// (TestReducedPrecisionKeepsRecall), for a few more doubtful boxes, and a
// larger margin would obscure more of the scene (measured:
// docs/benchmarks/figures-from-code-comments.md).
const Int8Margin = 0.08

// ReadInt8Model reads the int8 model in dir and checks it against the
// checksum file the script wrote with it (dir/centerface-int8.onnx.sha256:
// its SHA-256, the SHA-256 of the f32 model it was made from, the
// recipe). The file is made on this machine, not downloaded, so its
// checksum cannot be compiled in as the f32 model's is: the check catches
// a truncated, edited or stale file, and one made from another model.
func ReadInt8Model(dir string) ([]byte, error) {
	path := filepath.Join(dir, Int8Model)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("int8 face model %s: %w (run `make models`, or scripts/quantize-model.sh, to make it)", path, ErrModelMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("int8 face model %s: %w", path, err)
	}
	side, err := os.ReadFile(path + ".sha256")
	if err != nil {
		return nil, fmt.Errorf("int8 face model %s: its checksum file: %w (run scripts/quantize-model.sh)", path, err)
	}
	sum := sha256.Sum256(b)
	file := hex.EncodeToString(sum[:])
	if want := fmt.Sprintf("%s  %s\nfrom %s\nrecipe %s\n", file, Int8Model, CenterFaceSHA256, Int8Recipe); string(side) != want {
		got := strings.ReplaceAll(strings.TrimSpace(string(side)), "\n", "; ")
		return nil, fmt.Errorf("int8 face model %s: checksum file says %q, want the file's SHA-256 %s made from %s by %s (delete it and run scripts/quantize-model.sh)",
			path, got, file, CenterFaceSHA256[:12], Int8Recipe)
	}
	return b, nil
}
