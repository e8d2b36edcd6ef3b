package bolt

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockDir takes the lock file at path: exclusive for a writer, shared for
// readers, never waiting. A writer records its pid in the file so that
// the error another process gets can name it.
func lockDir(path string, exclusive bool) (*os.File, error) {
	flag, how := os.O_RDONLY, unix.LOCK_SH
	if exclusive {
		flag, how = os.O_RDWR|os.O_CREATE, unix.LOCK_EX
	}
	f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if !exclusive && errors.Is(err, os.ErrNotExist) {
			// A store file copied without its lock file (a backup):
			// bbolt's own shared lock on the file still keeps writers out.
			return nil, nil
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("process %d", pid)
				if pid == os.Getpid() {
					holder = "this process"
				}
			}
		}
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by %s", ErrLocked, path, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if exclusive {
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
	}
	return f, nil
}

// unlockDir releases the lock taken by lockDir; closing the file drops it.
func unlockDir(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// syncDir fsyncs a directory so that a file just created in it survives a
// power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
