package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockPath is the host lock every polc that changes pins or
// attachments takes, so that concurrent runs serialize.
const DefaultLockPath = "/run/polc.lock"

// lockWait bounds how long a polc waits for another one.
var lockWait = 60 * time.Second

// hostLock is a held flock; Unlock releases it.
type hostLock struct{ f *os.File }

// lockHost takes the lock at path, exclusive or shared, waiting up to
// lockWait. The holder's pid is written into the file for the error
// message of the next one.
func lockHost(path string, exclusive bool) (*hostLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, lockErr(path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, lockErr(path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, lockErr(path, err)
		}
		if time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			return nil, fmt.Errorf("%w: %s held by pid %s for more than %s", ErrLocked, path, strings.TrimSpace(string(holder)), lockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if exclusive {
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &hostLock{f}, nil
}

func lockErr(path string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: lock %s: %v", ErrPrivilege, path, err)
	}
	return fmt.Errorf("lock %s: %w", path, err)
}

func (l *hostLock) Unlock() {
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}
