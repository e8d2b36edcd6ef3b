package guest

import (
	"fmt"
	"io"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks an
// initramfs from, with fixed owners (root), times (0) and inode numbers
// (in order), so the archive depends only on its contents.
type cpioWriter struct {
	w     io.Writer
	ino   int
	count int64
	err   error
}

func newCPIO(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChr  = 0o020000
)

func (c *cpioWriter) entry(name string, mode uint32, data []byte, rmaj, rmin int) {
	if c.err != nil {
		return
	}
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.count += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.count % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string, perm uint32) { c.entry(name, modeDir|perm, nil, 0, 0) }
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.entry(name, modeFile|perm, data, 0, 0)
}
func (c *cpioWriter) charDev(name string, perm uint32, major, minor int) {
	c.entry(name, modeChr|perm, nil, major, minor)
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, nil, 0, 0)
	return c.err
}
