// Package golden compares test output with the files under golden/.
// POLC_UPDATE_GOLDEN=1 (what `make golden` sets) rewrites them instead;
// review the diff before committing.
package golden

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Dir is the absolute path of the golden/ directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Updating reports whether golden files are being rewritten.
func Updating() bool { return os.Getenv("POLC_UPDATE_GOLDEN") == "1" }

// Check compares got with golden/name, or rewrites the file when updating.
// A mismatch fails the test with a line diff.
func Check(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join(Dir(), filepath.FromSlash(name))
	if Updating() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (run 'make golden' to create it)", name, err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got); 'make golden' rewrites it:\n%s", name, diff)
	}
}
