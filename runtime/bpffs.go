package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
		if err := privateMounts(""); err != nil {
			return err
		}
		if err := mountBPFFS(); err != nil {
			return err
		}
	} else if err := privateMounts(p); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w: create %s: %v", ErrPrivilege, dir, err)
		}
		return err
	}
	return nil
}

// privateMounts refuses to pin where the host cannot see it: when polc
// runs in a mount namespace other than the host's (as under 'ip netns
// exec', which unshares the mounts and remounts /sys) and the bpf
// filesystem at dir is not the one the host sees there (dir "": one would
// have to be mounted), its pins would vanish with that namespace, and the
// links with them. The host's mount namespace is init's, or, where init's
// cannot be read (a sandbox), the parent process's. In the host's mount
// namespace, or in one that shares the host's bpffs, it does nothing.
func privateMounts(dir string) error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil
	}
	ref := ""
	for _, pid := range []string{"1", strconv.Itoa(os.Getppid())} {
		if ns, err := os.Readlink("/proc/" + pid + "/ns/mnt"); err == nil {
			if ns == self {
				return nil
			}
			ref = pid
			break
		}
	}
	if ref == "" {
		return nil // nothing to compare with
	}
	if dir != "" {
		var here, there unix.Stat_t
		if unix.Stat(dir, &here) == nil && unix.Stat("/proc/"+ref+"/root"+dir, &there) == nil && here.Dev == there.Dev {
			return nil // the host's bpffs, shared into this namespace
		}
	}
	return fmt.Errorf("%w: polc runs in a mount namespace of its own (as under 'ip netns exec', which remounts /sys), "+
		"so a bpf filesystem here and every pin in it would vanish when polc exits; "+
		"run it as 'nsenter --net=/run/netns/NS polc ...' instead, which keeps the host's mounts", ErrPrivateMounts)
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
