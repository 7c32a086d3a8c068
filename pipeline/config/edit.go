package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/veilproject/veil/counter"
)

// SetCounting writes camera's lines and zones into the configuration file
// at path, keeping the rest of the file as it is (comments, order, other
// cameras). The whole result is checked as Load checks a file before it
// replaces the old one, atomically and with the old one's mode. It returns
// the configuration the new file gives.
func SetCounting(path, camera string, lines []counter.Line, zones []counter.Zone) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, UnwrapPathErr(err))
	}
	out, err := withCounting(b, camera, lines, zones)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := Parse(path, out)
	if err != nil {
		return Config{}, err
	}
	cfg.Path = path
	return cfg, writeAtomic(path, out)
}

// withCounting is file b with camera's lines and zones replaced.
func withCounting(b []byte, camera string, lines []counter.Line, zones []counter.Zone) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a YAML mapping")
	}
	cams := value(doc.Content[0], "cameras")
	if cams == nil || cams.Kind != yaml.SequenceNode {
		return nil, errors.New("cameras: not a list")
	}
	var cam *yaml.Node
	for _, c := range cams.Content {
		if id := value(c, "id"); c.Kind == yaml.MappingNode && id != nil && id.Value == camera {
			cam = c
		}
	}
	if cam == nil {
		return nil, fmt.Errorf("cameras: no camera %q in the file", camera)
	}
	var ls, zs []*yaml.Node
	for _, l := range lines {
		n := flowMap("id", str(l.ID), "from", point(l.From), "to", point(l.To))
		if l.In != "" {
			n.Content = append(n.Content, scalar("in"), scalar(l.In))
		}
		ls = append(ls, n)
	}
	for _, z := range zones {
		poly := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, p := range z.Polygon {
			poly.Content = append(poly.Content, point(p))
		}
		n := flowMap("id", str(z.ID), "polygon", poly)
		if z.Capacity > 0 {
			n.Content = append(n.Content, scalar("capacity"), scalar(strconv.Itoa(z.Capacity)))
		}
		zs = append(zs, n)
	}
	set(cam, "lines", ls)
	set(cam, "zones", zs)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// value is key's value in mapping m, or nil.
func value(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// set makes key's value in m a block list of items, or removes the key
// when there are none.
func set(m *yaml.Node, key string, items []*yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			if len(items) == 0 {
				m.Content = append(m.Content[:i], m.Content[i+2:]...)
				return
			}
			m.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Content: items}
			return
		}
	}
	if len(items) > 0 {
		m.Content = append(m.Content, scalar(key), &yaml.Node{Kind: yaml.SequenceNode, Content: items})
	}
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

// str is v as a string, quoted if it would read as something else (an id
// "null", "true" or "12").
func str(v string) *yaml.Node {
	n := scalar(v)
	if n.ShortTag() != "!!str" {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func flowMap(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	for i := 0; i < len(kv); i += 2 {
		n.Content = append(n.Content, scalar(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return n
}

// point is a normalized point as [x, y], to the thousandth (a pixel of a
// 1000-pixel-wide picture).
func point(p counter.Point) *yaml.Node {
	f := func(v float64) *yaml.Node {
		return scalar(strconv.FormatFloat(v, 'f', -1, 64))
	}
	return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: []*yaml.Node{f(round3(p[0])), f(round3(p[1]))}}
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// writeAtomic replaces path with b: a temporary file beside it, synced,
// then renamed over it, with the old file's mode.
func writeAtomic(path string, b []byte) error {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("config %s: %w", path, UnwrapPathErr(err))
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err := errors.Join(err, f.Chmod(mode), f.Close()); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("config %s: %w", path, UnwrapPathErr(err))
	}
	return nil
}
