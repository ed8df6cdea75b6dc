package dsl

// Format prints f in canonical policy-language form.
func Format(f *File) []byte { return nil }
