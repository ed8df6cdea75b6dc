package dsl

// ParseYAML reads a policy written in YAML into the same AST as Parse.
func ParseYAML(path string, src []byte) (*File, Diagnostics) {
	var ds Diagnostics
	ds.Errorf(Pos{File: path, Line: 1, Col: 1}, "the YAML reader is not built yet")
	return &File{Path: path}, ds
}

// FormatYAML prints f in canonical YAML form.
func FormatYAML(f *File) []byte { return nil }
