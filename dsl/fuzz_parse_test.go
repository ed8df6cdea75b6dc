package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/participle/v2/lexer"
	"github.com/google/go-cmp/cmp"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic; the
// participle grammar and the error explainer must agree on which
// declarations are valid; and a file that parses must format to text that
// parses to the same AST and formats to itself.
func FuzzParse(f *testing.F) {
	err := filepath.WalkDir("../testdata", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pol") {
			return err
		}
		src, err := os.ReadFile(path)
		if err == nil {
			f.Add(src)
		}
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("test \"t\" { tcp [::1]:1 -> a flags syn expect allow }"))
	f.Add([]byte("test \"t\" { tcp a -> b:1 flags syn via via; reply via c expect deny }"))
	f.Add([]byte("policy p { select !a ingress deny to x in (y) , 1.2.3.4 except (5.6.7.8) }"))
	f.Add([]byte("import\"\"0")) // found by fuzzing: trailing tokens after an import
	// A header: comment paragraphs a blank line separates from the first declaration.
	f.Add([]byte("\n# title\n#\n\n\n# more\n \n# doc\nendpoint e addr 1.2.3.4 # eol\n# end\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, ds := Parse("fuzz.pol", src)
		polCheckAgreement(t, src)
		if ds.HasErrors() {
			return
		}
		out := Format(file)
		again, ds := Parse("fuzz.pol", out)
		if len(ds) > 0 {
			t.Fatalf("formatted output does not parse:\n%s\ninput:\n%q\noutput:\n%s", ds, src, out)
		}
		if diff := cmp.Diff(file, again, polIgnorePos); diff != "" {
			t.Fatalf("formatting changed the AST (-before +after):\n%s\ninput:\n%q", diff, src)
		}
		if out2 := Format(again); string(out2) != string(out) {
			t.Fatalf("Format is not idempotent:\n%s", cmp.Diff(string(out), string(out2)))
		}
	})
}

// polCheckAgreement checks, declaration by declaration, that participle
// accepts exactly what the explainer accepts.
func polCheckAgreement(t *testing.T, src []byte) {
	t.Helper()
	var ds Diagnostics
	toks, _ := polLexSource("fuzz.pol", src, &ds)
	var code []lexer.Token
	for _, tok := range toks {
		if tok.Type != tokComment {
			code = append(code, tok)
		}
	}
	for _, c := range polSplitDecls(code) {
		head := c.toks[0]
		if head.Type != tokKeyword || !polDeclKeywords[head.Value] {
			continue
		}
		var err error
		switch head.Value {
		case "import":
			_, err = polParseChunk(importParser, c)
		case "endpoint":
			_, err = polParseChunk(endpointParser, c)
		case "cidrset":
			_, err = polParseChunk(cidrsetParser, c)
		case "policy":
			_, err = polParseChunk(policyParser, c)
		case "prefilter":
			_, err = polParseChunk(prefilterParser, c)
		case "test":
			_, err = polParseChunk(testParser, c)
		}
		_, msg, found := polExplain(c)
		if (err != nil) != found {
			t.Fatalf("grammar and explainer disagree on %q: participle says %v, explainer says %q", src, err, msg)
		}
	}
}
