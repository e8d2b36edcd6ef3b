package store

import (
	"fmt"
	"strings"
)

// CheckPage validates ListPage's arguments and returns dir's prefix:
// after must be "" or a key below dir, limit positive, rev not negative.
func CheckPage(dir, after string, limit int, rev int64) (string, error) {
	prefix, err := DirPrefix(dir)
	if err != nil {
		return "", err
	}
	switch {
	case limit <= 0:
		return "", fmt.Errorf("list page %q: limit %d: %w: want at least 1", dir, limit, ErrInvalid)
	case rev < 0:
		return "", fmt.Errorf("list page %q: revision %d: %w", dir, rev, ErrInvalid)
	case after != "" && !strings.HasPrefix(after, prefix):
		return "", fmt.Errorf("list page %q: after %q: %w: not a key below the directory", dir, after, ErrInvalid)
	}
	return prefix, nil
}
