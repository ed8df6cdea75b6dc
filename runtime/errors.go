package runtime

import (
	"errors"
	"os"
	"syscall"

	"github.com/cilium/ebpf"
)

// Errors a caller can test for with errors.Is.
var (
	// ErrNotLoaded: no bundle of that name is loaded on the host.
	ErrNotLoaded = errors.New("not loaded")
	// ErrAlreadyLoaded: a different bundle is loaded under the name (use apply).
	ErrAlreadyLoaded = errors.New("already loaded")
	// ErrNoBPFFS: there is no bpf filesystem where pins go and it cannot be mounted.
	ErrNoBPFFS = errors.New("no bpf filesystem")
	// ErrPrivilege: the operation needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN).
	ErrPrivilege = errors.New("insufficient privileges")
	// ErrInvalidName: the name cannot name a loaded bundle.
	ErrInvalidName = errors.New("invalid name")
	// ErrLocked: another polc holds the host lock for too long.
	ErrLocked = errors.New("host is locked by another polc")
	// ErrOtherNetns: the operation must run in another network namespace
	// (a netlink tc filter is found by ifindex only in its own).
	ErrOtherNetns = errors.New("run polc in the attachment's network namespace")
	// ErrBinding: an interface cannot be bound to the endpoint asked for
	// (none given, the bundle has no such endpoint, the interface serves
	// another, or its ifindex is taken), or apply's bundle lacks an
	// endpoint an interface serves.
	ErrBinding = errors.New("interface binding")
	// ErrStacked: the interface already runs another loaded bundle's
	// programs on that hook; bundles do not combine on one interface.
	ErrStacked = errors.New("interface runs another bundle")
	// ErrPrivateMounts: polc runs in a mount namespace of its own whose
	// bpf filesystem the host does not see (ip netns exec).
	ErrPrivateMounts = errors.New("private mount namespace")
	// ErrMissingHook: apply's bundle has no program for a hook the loaded
	// one is attached to.
	ErrMissingHook = errors.New("bundle lacks an attached hook")
	// ErrDigest: the bundle is not the one the caller pinned (--digest).
	ErrDigest = errors.New("bundle digest mismatch")
)

// IsEnvironment reports whether err comes from what the host lacks
// (privileges, bpffs, kernel features) or from where polc runs (the wrong
// network namespace) rather than from the bundle. The CLI exits 2 for
// these.
func IsEnvironment(err error) bool {
	return errors.Is(err, ErrNoBPFFS) || errors.Is(err, ErrPrivilege) ||
		errors.Is(err, ErrLocked) || errors.Is(err, ebpf.ErrNotSupported) ||
		errors.Is(err, os.ErrPermission) || errors.Is(err, ErrOtherNetns) || errors.Is(err, ErrPrivateMounts) ||
		errors.Is(err, syscall.EROFS)
}
