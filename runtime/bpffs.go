package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// BPFFSMount is where polc mounts the bpf filesystem when the host has
// none; DefaultRoot is where it pins, one directory per loaded bundle.
const (
	BPFFSMount  = "/sys/fs/bpf"
	DefaultRoot = BPFFSMount + "/polc"
)

// IsBPFFS reports whether path lies on a bpf filesystem.
func IsBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}

// EnsureBPFFS makes sure dir exists on a bpf filesystem. When the nearest
// existing ancestor of dir is not on one and dir lies under BPFFSMount, it
// mounts bpffs at BPFFSMount first.
func EnsureBPFFS(dir string) error {
	dir = filepath.Clean(dir)
	p := dir
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	ok, err := IsBPFFS(p)
	if err != nil {
		return fmt.Errorf("%w: statfs %s: %v", ErrNoBPFFS, p, err)
	}
	if !ok {
		if dir != BPFFSMount && !strings.HasPrefix(dir, BPFFSMount+"/") {
			return fmt.Errorf("%w: %s is not on a bpf filesystem", ErrNoBPFFS, dir)
		}
		if err := mountBPFFS(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w: create %s: %v", ErrPrivilege, dir, err)
		}
		return err
	}
	return nil
}

func mountBPFFS() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: %s is not a bpf filesystem and mounting one needs root", ErrNoBPFFS, BPFFSMount)
	}
	if err := os.MkdirAll(BPFFSMount, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrNoBPFFS, err)
	}
	if err := unix.Mount("bpf", BPFFSMount, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("%w: mount bpf at %s: %v", ErrNoBPFFS, BPFFSMount, err)
	}
	return nil
}
