package k8s

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/polc-dev/polc/dsl"
)

// object is one Kubernetes object found in a source file: a document, or an
// item of a List document.
type object struct {
	file       string
	node       *yaml.Node // the object's mapping
	apiVersion string
	kind       string
}

// pos returns the position of n in o's file.
func (o *object) pos(n *yaml.Node) dsl.Pos {
	if n == nil {
		return dsl.Pos{File: o.file}
	}
	return dsl.Pos{File: o.file, Line: n.Line, Col: n.Column}
}

// at returns the position of the field or item that path names inside the
// object (string elements are mapping keys, int elements sequence indexes).
// A scalar field points at its value (the name, the port), a field holding
// a mapping or list at its key, where a reader looks for it; when the path
// runs out of the document, the deepest node found is used.
func (o *object) at(path ...any) dsl.Pos {
	n, key := walk(o.node, path...)
	if key != nil && deref(n).Kind != yaml.ScalarNode {
		return o.pos(key)
	}
	return o.pos(n)
}

// fieldsAt is at(path..., k) for every key k of the mapping at path, in
// one pass (at per key would walk the mapping once per key): the position
// of a scalar value, or of the key. Keys the mapping lacks are not in it.
func (o *object) fieldsAt(path ...any) map[string]dsl.Pos {
	n, _ := walk(o.node, path...)
	n = deref(n)
	out := map[string]dsl.Pos{}
	if n == nil || n.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if _, dup := out[k.Value]; dup {
			continue // field finds the first
		}
		if v != nil && v.Kind == yaml.ScalarNode {
			out[k.Value] = o.pos(v)
		} else {
			out[k.Value] = o.pos(k)
		}
	}
	return out
}

// keyAt is at for the key of a mapping field, whatever its value.
func (o *object) keyAt(path ...any) dsl.Pos {
	n, key := walk(o.node, path...)
	if key != nil {
		return o.pos(key)
	}
	return o.pos(n)
}

// walk follows path from n and returns the deepest node reached and, when the
// last step was a mapping key, that key's node.
func walk(n *yaml.Node, path ...any) (node, key *yaml.Node) {
	node = n
	for _, p := range path {
		v := deref(node)
		switch p := p.(type) {
		case string:
			k, val := field(v, p)
			if val == nil {
				return node, key
			}
			node, key = val, k
		case int:
			if v == nil || v.Kind != yaml.SequenceNode || p < 0 || p >= len(v.Content) {
				return node, key
			}
			node, key = v.Content[p], nil
		}
	}
	return node, key
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// field returns the key and value nodes of name in mapping n.
func field(n *yaml.Node, name string) (key, val *yaml.Node) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			return n.Content[i], deref(n.Content[i+1])
		}
	}
	return nil, nil
}

// scalarField returns the value of a scalar field of mapping n, or "".
func scalarField(n *yaml.Node, name string) string {
	_, v := field(n, name)
	if v == nil || v.Kind != yaml.ScalarNode {
		return ""
	}
	return v.Value
}

// splitObjects parses every document of src and returns the objects they
// hold, unwrapping List documents (`kubectl get ... -o yaml`).
func splitObjects(file string, src []byte, ds *dsl.Diagnostics) []*object {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var objs []*object
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			pos, msg := dsl.YAMLSyntaxError(file, err, src)
			ds.Errorf(pos, "invalid YAML: %s", msg)
			break
		}
		root := &doc
		if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
			root = root.Content[0]
		}
		root = deref(root)
		if root.Kind == 0 || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
			continue // an empty document
		}
		if expandedSize(root, map[*yaml.Node]int{}) > literalSize(root)+maxAliasNodes {
			ds.Errorf(dsl.Pos{File: file, Line: root.Line, Col: root.Column},
				"document too large: its aliases expand to more than %d YAML nodes", maxAliasNodes)
			continue
		}
		checkDuplicateKeys(file, root, ds)
		objs = appendObject(objs, file, root, ds)
	}
	return objs
}

// checkDuplicateKeys reports every mapping key written twice in the same
// mapping. YAML forbids them and the API server's decoder refuses them;
// read as "the last one wins" they would hide what a file says (two
// documents joined by a missing `---` read as one object, the second's
// fields over the first's). Aliases are checked where their anchor is.
func checkDuplicateKeys(file string, n *yaml.Node, ds *dsl.Diagnostics) {
	if n == nil || n.Kind == yaml.AliasNode {
		return
	}
	if n.Kind == yaml.MappingNode {
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Value == "<<" {
				continue
			}
			if first, dup := seen[k.Value]; dup {
				ds.Errorf(dsl.Pos{File: file, Line: k.Line, Col: k.Column},
					"duplicate key %q (first at line %d)", k.Value, first.Line)
				continue
			}
			seen[k.Value] = k
		}
	}
	for _, c := range n.Content {
		checkDuplicateKeys(file, c, ds)
	}
}

// maxAliasNodes bounds how many nodes aliases may add to a document, so
// that a few nested aliases ("billion laughs") cannot make the reader run
// for ever.
const maxAliasNodes = 1 << 16

// maxNodes stops expandedSize counting: past it, a document is too large
// whatever its literal size.
const maxNodes = 1 << 26

// literalSize counts n's nodes as written, an alias counting as one.
func literalSize(n *yaml.Node) int {
	size := 1
	for _, c := range n.Content {
		size += literalSize(c)
	}
	return size
}

// expandedSize counts n's nodes with aliases expanded, memoized per node;
// it stops counting past maxNodes.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int) int {
	n = deref(n)
	if n == nil {
		return 0
	}
	if s, ok := memo[n]; ok {
		return s
	}
	memo[n] = maxNodes + 1 // a node reached again while being counted is a cycle
	size := 1
	for _, c := range n.Content {
		size += expandedSize(c, memo)
		if size > maxNodes {
			break
		}
	}
	memo[n] = size
	return size
}

func appendObject(objs []*object, file string, n *yaml.Node, ds *dsl.Diagnostics) []*object {
	o := &object{file: file, node: n}
	if n.Kind != yaml.MappingNode {
		ds.Errorf(o.pos(n), "expected a Kubernetes object (a mapping with apiVersion and kind), found %s", describe(n))
		return objs
	}
	o.apiVersion = scalarField(n, "apiVersion")
	o.kind = scalarField(n, "kind")
	// apiversion or Kind would otherwise read as a missing field, and the
	// object as one of an unknown kind.
	bad := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		for _, want := range []string{"apiVersion", "kind"} {
			if k.Value != want && strings.EqualFold(k.Value, want) {
				ds.Errorf(o.pos(k), "unknown field %q (did you mean %q?)", k.Value, want)
				bad = true
			}
		}
	}
	if bad {
		return objs
	}
	if o.kind == "" {
		ds.Errorf(o.pos(n), "object has no kind")
		return objs
	}
	if o.apiVersion == "" {
		ds.Errorf(o.at("kind"), "%s has no apiVersion", o.kind)
		return objs
	}
	if strings.HasSuffix(o.kind, "List") {
		// A misspelled items key would otherwise read as an empty list,
		// dropping every object in it without a word.
		if !checkTopFields(o, []string{"apiVersion", "kind", "metadata", "items"}, ds) {
			return objs
		}
		_, items := field(n, "items")
		if items == nil || items.Kind == yaml.ScalarNode && items.Tag == "!!null" {
			return objs
		}
		if items.Kind != yaml.SequenceNode {
			ds.Errorf(o.at("items"), "%s items: expected a list, found %s", o.kind, describe(items))
			return objs
		}
		for _, it := range items.Content {
			objs = appendObject(objs, file, deref(it), ds)
		}
		return objs
	}
	return append(objs, o)
}

// checkTopFields reports, at its key, every top-level field of o that is
// not one of fields, with the closest known one. It returns whether there
// was none.
func checkTopFields(o *object, fields []string, ds *dsl.Diagnostics) bool {
	ok := true
	n := deref(o.node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(fields, k.Value) {
			ds.Errorf(o.pos(k), "%s: unknown field %q (a %s has %s)%s", o.kind, k.Value, o.kind,
				strings.Join(fields, ", "), dsl.DidYouMean(k.Value, fields))
			ok = false
		}
	}
	return ok
}

// describe names what kind of YAML value n is, for error messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!null":
		return "null"
	}
	return strconv.Quote(n.Value)
}

// toValue turns a YAML node into the plain value encoding/json would
// produce, so that Kubernetes API types (which carry json tags and custom
// JSON unmarshalers) can be decoded from it.
func toValue(n *yaml.Node) (any, error) {
	n = deref(n)
	if n == nil {
		return nil, nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return toValue(n.Content[0])
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := deref(n.Content[i])
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: YAML merge keys (<<) are not supported", k.Line)
			}
			v, err := toValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := toValue(c)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	}
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, err
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return nil, err
		}
		return i, nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, err
		}
		return f, nil
	}
	return n.Value, nil
}

// decode fills out (a pointer) from the YAML node n through encoding/json,
// which is how the Kubernetes API types expect to be decoded.
func decode(n *yaml.Node, out any) error {
	v, err := toValue(n)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkFields reports, at their positions, the fields of n that type t
// does not have and the values whose shape does not fit t (a list where a
// mapping belongs, a word where a number belongs). what names the object
// for messages ("NetworkPolicy", "CiliumNetworkPolicy").
//
// Struct fields tagged `polc:"unsupported:REASON"` are fields of the real
// API that polc knowingly does not compile; using one is an error that
// says so rather than "unknown field".
func checkFields(o *object, n *yaml.Node, t reflect.Type, what string, ds *dsl.Diagnostics) {
	n = deref(n)
	if n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ds.Errorf(o.pos(n), "%s: expected a mapping, found %s", what, describe(n))
			return
		}
		fields := jsonFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				ds.Errorf(o.pos(k), "%s: unknown field %q", what, k.Value)
				continue
			}
			if reason, ok := strings.CutPrefix(f.Tag.Get("polc"), "unsupported:"); ok {
				if !isNull(v) {
					ds.Errorf(o.pos(k), "%s: field %q is not supported: %s", what, k.Value, reason)
				}
				continue
			}
			checkFields(o, v, f.Type, what, ds)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			ds.Errorf(o.pos(n), "%s: expected a list, found %s", what, describe(n))
			return
		}
		for _, c := range n.Content {
			checkFields(o, c, t.Elem(), what, ds)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			ds.Errorf(o.pos(n), "%s: expected a mapping, found %s", what, describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkFields(o, n.Content[i+1], t.Elem(), what, ds)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			ds.Errorf(o.pos(n), "%s: expected a string, found %s (quote it)", what, describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			ds.Errorf(o.pos(n), "%s: expected true or false, found %s", what, describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			ds.Errorf(o.pos(n), "%s: expected a number, found %s", what, describe(n))
		}
	}
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// jsonFields maps the JSON names of t's fields (including inlined embedded
// structs) to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					m[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f
	}
	return m
}
