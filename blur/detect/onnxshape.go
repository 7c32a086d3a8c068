package detect

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the ONNX protobuf messages touched here (onnx.proto3).
const (
	onnxModelGraph       = 7  // ModelProto.graph
	onnxGraphInitializer = 5  // GraphProto.initializer
	onnxGraphInput       = 11 // GraphProto.input
	onnxGraphOutput      = 12 // GraphProto.output
	onnxGraphValueInfo   = 13 // GraphProto.value_info
	onnxTensorName       = 8  // TensorProto.name
	onnxValueInfoName    = 1  // ValueInfoProto.name
	onnxValueInfoType    = 2  // ValueInfoProto.type
	onnxTypeTensor       = 1  // TypeProto.tensor_type
	onnxTensorTypeShape  = 2  // TypeProto.Tensor.shape
	onnxShapeDim         = 1  // TensorShapeProto.dim
	onnxDimParam         = 2  // TensorShapeProto.Dimension.dim_param
	onnxDimValue         = 1  // TensorShapeProto.Dimension.dim_value
)

// symbolicSizes rewrites CenterFace's ONNX file for a runtime that takes
// the graph's declared shapes at their word (ONNX Runtime): the file
// declares its input [10,3,32,32] and its outputs to match, and ONNX
// Runtime refuses any other picture size until those dims are symbolic.
// The batch and both spatial dims of every graph input and output become
// named ("N", "H", "W"; the channels stay), the intermediate shapes the
// file records (value_info, optional) are dropped for the runtime to infer
// again, and the weights the file also lists as graph inputs (which makes
// ONNX Runtime treat them as overridable, blocking constant folding) are
// listed as weights only. Nothing else in the file changes.
func symbolicSizes(model []byte) ([]byte, error) {
	out, err := rewritePath(model, []protowire.Number{onnxModelGraph}, func(g []byte) ([]byte, error) {
		out, err := symbolicGraph(g)
		if err != nil {
			err = fmt.Errorf("graph: %w", err)
		}
		return out, err
	})
	if err != nil {
		return nil, fmt.Errorf("onnx model: %w", err)
	}
	return out, nil
}

func symbolicGraph(g []byte) ([]byte, error) {
	weights := map[string]bool{}
	err := eachField(g, func(num protowire.Number, typ protowire.Type, _, val []byte) error {
		if num != onnxGraphInitializer || typ != protowire.BytesType {
			return nil
		}
		name, err := stringField(val, onnxTensorName)
		weights[name] = true
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []byte
	inputs := 0
	err = eachField(g, func(num protowire.Number, typ protowire.Type, raw, val []byte) error {
		switch {
		case typ != protowire.BytesType:
		case num == onnxGraphValueInfo:
			return nil
		case num == onnxGraphInput || num == onnxGraphOutput:
			name, err := stringField(val, onnxValueInfoName)
			if err != nil {
				return err
			}
			if num == onnxGraphInput && weights[name] {
				return nil
			}
			if num == onnxGraphInput {
				inputs++
			}
			v, err := rewritePath(val, []protowire.Number{onnxValueInfoType, onnxTypeTensor, onnxTensorTypeShape}, symbolicShape)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendBytes(out, v)
			return nil
		}
		out = append(out, raw...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if inputs != 1 {
		return nil, fmt.Errorf("%d picture inputs, want 1", inputs)
	}
	return out, nil
}

// symbolicShape names dims 0, 2 and 3 of a 4-dim shape.
func symbolicShape(shape []byte) ([]byte, error) {
	names := []string{"N", "", "H", "W"}
	var out []byte
	i := 0
	err := eachField(shape, func(num protowire.Number, typ protowire.Type, raw, _ []byte) error {
		if num != onnxShapeDim || typ != protowire.BytesType {
			out = append(out, raw...)
			return nil
		}
		if i >= len(names) {
			return errors.New("more than 4 dims")
		}
		if names[i] == "" {
			out = append(out, raw...)
		} else {
			var d []byte
			d = protowire.AppendTag(d, onnxDimParam, protowire.BytesType)
			d = protowire.AppendString(d, names[i])
			out = protowire.AppendTag(out, onnxShapeDim, protowire.BytesType)
			out = protowire.AppendBytes(out, d)
		}
		i++
		return nil
	})
	if err == nil && i != len(names) {
		err = fmt.Errorf("%d dims, want 4", i)
	}
	return out, err
}

// rewritePath applies f to the message at path (field numbers, each a
// singular message field, so present exactly once) inside msg.
func rewritePath(msg []byte, path []protowire.Number, f func([]byte) ([]byte, error)) ([]byte, error) {
	if len(path) == 0 {
		return f(msg)
	}
	var out []byte
	found := 0
	err := eachField(msg, func(num protowire.Number, typ protowire.Type, raw, val []byte) error {
		if num != path[0] || typ != protowire.BytesType {
			out = append(out, raw...)
			return nil
		}
		found++
		v, err := rewritePath(val, path[1:], f)
		if err != nil {
			return err
		}
		out = protowire.AppendTag(out, num, protowire.BytesType)
		out = protowire.AppendBytes(out, v)
		return nil
	})
	if err == nil && found != 1 {
		err = fmt.Errorf("field %d present %d times, want once", path[0], found)
	}
	return out, err
}

// stringField is the first string field num of msg ("" if none).
func stringField(msg []byte, num protowire.Number) (string, error) {
	s, found := "", false
	err := eachField(msg, func(n protowire.Number, typ protowire.Type, _, val []byte) error {
		if n == num && typ == protowire.BytesType && !found {
			s, found = string(val), true
		}
		return nil
	})
	return s, err
}

// eachField calls f for each field of the encoded message b with its
// whole encoding (raw) and, for a length-delimited field, its contents.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, raw, val []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		raw := b[:n+m]
		var val []byte
		if typ == protowire.BytesType {
			val, _ = protowire.ConsumeBytes(b[n:])
		}
		if err := f(num, typ, raw, val); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}
