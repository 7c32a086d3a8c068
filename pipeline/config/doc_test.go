package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestConfigurationDocCoversEveryKey: docs/configuration.md names every
// key the config types accept, each in the section of its top-level key
// (the section whose heading names it in backticks, or "Top level").
func TestConfigurationDocCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // "## " heading → its text, subsections included
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			cur = line
		}
		sections[cur] += line + "\n"
	}
	section := func(top string) string {
		for h, text := range sections {
			if strings.Contains(h, "`"+top+"`") {
				return text
			}
		}
		return sections["## Top level"]
	}
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		f := ct.Field(i)
		top := yamlName(f)
		if top == "" {
			continue
		}
		text := section(top)
		for _, key := range yamlKeys(f.Type, "") {
			leaf := key[strings.LastIndex(key, ".")+1:]
			if leaf == "" {
				leaf = top
			}
			if !regexp.MustCompile("`[^`\\n]*\\b" + regexp.QuoteMeta(leaf) + "\\b[^`\\n]*`").MatchString(text) {
				t.Errorf("docs/configuration.md does not name %s.%s in its section", top, key)
			}
		}
	}
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	return name
}

// yamlKeys are the dotted keys under a type ("" for a leaf).
func yamlKeys(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() == "time" {
		return []string{prefix}
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("yaml") == "-" || !f.IsExported() {
			continue
		}
		name := yamlName(f)
		if strings.Contains(f.Tag.Get("yaml"), "inline") {
			out = append(out, yamlKeys(f.Type, prefix)...)
			continue
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out = append(out, yamlKeys(f.Type, p)...)
	}
	return out
}
