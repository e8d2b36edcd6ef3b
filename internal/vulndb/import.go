package vulndb

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// maxRecordSize caps one OSV JSON file, so that a hostile archive cannot
// exhaust memory through one member.
const maxRecordSize = 16 << 20

// Read reads the OSV records of src: a directory (every *.json below it),
// a zip archive (every *.json member, as in osv.dev's
// gs://osv-vulnerabilities/ECOSYSTEM/all.zip), or a single JSON file. A
// file that is not a valid OSV record fails the read, naming the file.
func Read(ctx context.Context, src string) ([]*Entry, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("read OSV records: %w", err)
	}
	var out []*Entry
	add := func(name string, r io.Reader) error {
		data, err := io.ReadAll(io.LimitReader(r, maxRecordSize+1))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(data) > maxRecordSize {
			return fmt.Errorf("%s: %w: larger than %d bytes", name, ErrInvalidEntry, maxRecordSize)
		}
		e, err := ParseEntry(data)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, e)
		return nil
	}
	switch {
	case fi.IsDir():
		err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(d.Name(), ".json") {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return add(p, f)
		})
	case strings.HasSuffix(src, ".zip"):
		err = readZip(ctx, src, add)
	default:
		var f *os.File
		if f, err = os.Open(src); err == nil {
			err = add(src, f)
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read OSV records from %s: %w", src, err)
	}
	return out, nil
}

func readZip(ctx context.Context, src string, add func(string, io.Reader) error) error {
	z, err := zip.OpenReader(src)
	if err != nil {
		return err
	}
	defer z.Close()
	files := z.File
	sort.Slice(files, func(a, b int) bool { return files[a].Name < files[b].Name })
	for _, f := range files {
		if f.FileInfo().IsDir() || !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		err = add(f.Name, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Import reads src (see Read) and stores its records (see Put) in one
// transaction.
func (d *DB) Import(ctx context.Context, src string, now time.Time) (ImportStats, error) {
	entries, err := Read(ctx, src)
	if err != nil {
		return ImportStats{}, err
	}
	return d.Put(ctx, entries, now)
}
