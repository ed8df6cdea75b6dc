package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParseYAML checks that no input makes the YAML reader fail (it turns a
// panic into a "YAML reader failed" diagnostic, which counts as a failure
// here) and that every input it accepts survives FormatYAML unchanged.
func FuzzParseYAML(f *testing.F) {
	for _, pattern := range []string{"../testdata/yaml/*.yaml", "../testdata/bad/yaml/*.yaml", "../testdata/spoofing/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, path := range files {
			src, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
	// What the Kubernetes reader produces, and label text that needs quotes.
	for _, src := range []string{
		"endpoints:\n  - name: x.web\n    labels: {k8s:io.kubernetes.pod.namespace: x, \"<<\": \"a b\", \"\": }\n    addrs: [10.0.0.1]\n",
		"policies:\n  - name: cnp_x.name_1\n    select: ['\"k8s:io.kubernetes.pod.name\" in (a, \"b c\")', '!\"k8s:x\"']\n    ingress:\n      - action: allow\n        from: [x.ingress-http, {select: '{\"k8s:a\"=\"\\xff\", b!=\"\"}'}]\n",
		"tests:\n  - name: t\n    steps: [{packet: \"tcp x.web -> cnp_x.name_1:80\", expect: allow}]\n",
		"tests:\n  - name: t\n    steps: [{packet: \"udp 10.0.0.1 -> a:53\", via: x.evil}, {reply: true, via: 'true', expect: deny}]\n",
	} {
		f.Add([]byte(src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, ds := ParseYAML("fuzz.yaml", src)
		for _, d := range ds {
			if strings.HasPrefix(d.Msg, "YAML reader failed") {
				t.Fatalf("%v\ninput:\n%s", d, src)
			}
			if !d.Pos.IsValid() {
				t.Errorf("diagnostic without a position: %v", d)
			}
		}
		if ds.HasErrors() {
			return
		}
		out := FormatYAML(file)
		again, ds := ParseYAML("fuzz.yaml", out)
		if len(ds) > 0 {
			t.Fatalf("formatted output does not read back:\n%s\ninput:\n%s\noutput:\n%s", ds, src, out)
		}
		if diff := cmp.Diff(file, again, cmpopts.IgnoreTypes(Pos{}), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("FormatYAML changed the AST (-input +output):\n%s\ninput:\n%s\noutput:\n%s", diff, src, out)
		}
		if out2 := FormatYAML(again); string(out2) != string(out) {
			t.Fatalf("FormatYAML is not idempotent:\n%s", cmp.Diff(string(out), string(out2)))
		}
	})
}

// FuzzYAMLNamesAndLabels checks that the YAML reader and the policy
// language agree on names and label text: a string is a name in YAML
// exactly when the language reads it back as that name, and any label key
// and value survives FormatYAML and ParseYAML (as it survives Format and
// Parse), in endpoint labels, selector maps and requirement strings.
func FuzzYAMLNamesAndLabels(f *testing.F) {
	for _, s := range yamlOddLabelText {
		f.Add(s, s, "x")
	}
	for _, s := range []string{"x.web", "x.ingress-http", "cnp_x.name_1", "web-", "a..b", "test", "1web", "\xff"} {
		f.Add(s, "k8s:io.kubernetes.pod.namespace", s)
	}
	f.Fuzz(func(t *testing.T, name, key, value string) {
		// Names.
		ep := &File{Decls: []Decl{&Endpoint{Name: Ident{Name: name}, Addrs: []Text{{Text: "10.0.0.1"}}}}}
		pf, pds := Parse("n.pol", Format(ep))
		polOK := len(pds) == 0 && cmp.Equal(ep.Decls, pf.Decls, cmpopts.IgnoreTypes(Pos{}), cmpopts.EquateEmpty())
		if yamlIsName(name) != polOK {
			t.Fatalf("name %q: YAML accepts it: %v, language: %v", name, yamlIsName(name), polOK)
		}
		if polOK {
			out := FormatYAML(ep)
			g, ds := ParseYAML("n.yaml", out)
			if len(ds) > 0 || !cmp.Equal(ep.Decls, g.Decls, cmpopts.IgnoreTypes(Pos{}), cmpopts.EquateEmpty()) {
				t.Fatalf("name %q does not survive FormatYAML:\n%s\n%s", name, out, ds)
			}
		}
		// Label text.
		reqs := []Requirement{
			{Key: key, Op: OpEq, Values: []string{value}},
			{Key: key, Op: OpNotEq, Values: []string{value}},
			{Key: key, Op: OpIn, Values: []string{value, key}},
			{Key: value, Op: OpNotIn, Values: []string{key}},
			{Key: key, Op: OpExists},
			{Key: value, Op: OpNotExists},
		}
		var decls []Decl
		if utf8.ValidString(key) && utf8.ValidString(value) {
			decls = append(decls, &Endpoint{Name: Ident{Name: "e"}, Labels: []Label{{Key: key, Value: value}}, Addrs: []Text{{Text: "10.0.0.1"}}})
		}
		decls = append(decls,
			&Policy{Name: Ident{Name: "m"}, Select: Selector{Reqs: reqs[:1]}},
			&Policy{Name: Ident{Name: "r"}, Select: Selector{Reqs: reqs}},
		)
		file := &File{Decls: decls}
		out := FormatYAML(file)
		g, ds := ParseYAML("l.yaml", out)
		if len(ds) > 0 {
			t.Fatalf("key %q, value %q: formatted output does not read back:\n%s\noutput:\n%s", key, value, ds, out)
		}
		if diff := cmp.Diff(file.Decls, g.Decls, cmpopts.IgnoreTypes(Pos{}), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("key %q, value %q: FormatYAML changed the AST (-before +after):\n%s\noutput:\n%s", key, value, diff, out)
		}
		pol := Format(file)
		h, ds := Parse("l.pol", pol)
		if len(ds) > 0 {
			t.Fatalf("key %q, value %q: the language does not read its own output:\n%s\n%s", key, value, ds, pol)
		}
		if diff := cmp.Diff(file.Decls, h.Decls, cmpopts.IgnoreTypes(Pos{}), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("key %q, value %q: Format changed the AST (-before +after):\n%s\n%s", key, value, diff, pol)
		}
		for _, r := range reqs {
			text := polRequirementText(r)
			got, err := yamlParseRequirements(text, yamlStrPos{})
			if err != nil {
				t.Fatalf("YAML rejects the language's requirement %q: %s", text, err.msg)
			}
			if diff := cmp.Diff([]Requirement{r}, got, cmpopts.IgnoreTypes(Pos{})); diff != "" {
				t.Fatalf("YAML reads the language's requirement %q differently (-want +got):\n%s", text, diff)
			}
		}
	})
}
