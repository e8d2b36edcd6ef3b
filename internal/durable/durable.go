// Package durable writes the small state files that must survive a crash
// of the node (records, tenant ranges, volume metadata): fsynced before
// they count.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to path (created or truncated, mode 0600) and
// fsyncs it.
func WriteFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Replace replaces path with data at once: WriteFile to path.tmp, rename
// it over path, and fsync the directory so that the rename survives too.
func Replace(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := WriteFile(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
