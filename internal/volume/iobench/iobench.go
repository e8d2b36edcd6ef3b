// Package iobench is rung bench volume's file system workload, a small Go
// equivalent of fio's four classic jobs: sequential write and read in 1
// MiB blocks, random 4 KiB writes and reads, each with O_DIRECT (the page
// cache would measure memory, not the volume) and fsync at the end of a
// write job. The same code runs inside a replica (the rung binary copied
// into the image, started with ChildEnv set) and on the host against the
// same file system, so the two figures compare like with like.
package iobench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ChildEnv names the directory a child process benchmarks; SizeEnv the
// file size in MiB, OpsEnv the random operations per job.
const (
	ChildEnv = "RUNG_VOLBENCH_DIR"
	SizeEnv  = "RUNG_VOLBENCH_MIB"
	OpsEnv   = "RUNG_VOLBENCH_OPS"
)

// Options size one run.
type Options struct {
	// MiB is the size of the test file; Ops the random 4 KiB operations
	// of each random job.
	MiB, Ops int
	// Seed makes the random offsets repeatable.
	Seed uint64
}

// Result is one run's figures.
type Result struct {
	SeqWriteMBps float64 `json:"seqWriteMBps"`
	SeqReadMBps  float64 `json:"seqReadMBps"`
	RandWriteOps float64 `json:"randWriteIOPS"`
	RandReadOps  float64 `json:"randReadIOPS"`
	// Direct says whether O_DIRECT was honoured (gVisor may refuse it;
	// then the page cache is in the figures and they say so).
	Direct bool `json:"direct"`
}

const (
	seqBlock  = 1 << 20
	randBlock = 4 << 10
	align     = 4 << 10
)

// Run runs the four jobs in dir and removes its file.
func Run(dir string, o Options) (Result, error) {
	if o.MiB <= 0 || o.Ops <= 0 {
		return Result{}, errors.New("iobench: MiB and Ops must be positive")
	}
	path := filepath.Join(dir, "rung-volbench.dat")
	defer os.Remove(path)
	var res Result
	res.Direct = true
	open := func(flags int) (*os.File, error) {
		f, err := os.OpenFile(path, flags|unix.O_DIRECT, 0o600)
		if errors.Is(err, unix.EINVAL) {
			res.Direct = false
			f, err = os.OpenFile(path, flags, 0o600)
		}
		return f, err
	}
	size := int64(o.MiB) << 20
	buf := alignedBuf(seqBlock)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not zeros: nothing may compress or skip them
	}

	// Sequential write, fsync included.
	f, err := open(os.O_RDWR | os.O_CREATE | os.O_TRUNC)
	if err != nil {
		return res, err
	}
	start := time.Now()
	for off := int64(0); off < size; off += seqBlock {
		if _, err := f.WriteAt(buf, off); err != nil {
			f.Close()
			return res, fmt.Errorf("sequential write: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return res, err
	}
	res.SeqWriteMBps = mbps(size, time.Since(start))
	f.Close()

	// Sequential read.
	if f, err = open(os.O_RDONLY); err != nil {
		return res, err
	}
	start = time.Now()
	for off := int64(0); off < size; off += seqBlock {
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return res, fmt.Errorf("sequential read: %w", err)
		}
	}
	res.SeqReadMBps = mbps(size, time.Since(start))
	f.Close()

	// Random 4 KiB writes then reads, at the same offsets.
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	offs := make([]int64, o.Ops)
	for i := range offs {
		offs[i] = rng.Int64N(size/randBlock) * randBlock
	}
	small := buf[:randBlock]
	if f, err = open(os.O_RDWR); err != nil {
		return res, err
	}
	start = time.Now()
	for _, off := range offs {
		if _, err := f.WriteAt(small, off); err != nil {
			f.Close()
			return res, fmt.Errorf("random write: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return res, err
	}
	res.RandWriteOps = float64(len(offs)) / time.Since(start).Seconds()
	f.Close()
	if f, err = open(os.O_RDONLY); err != nil {
		return res, err
	}
	start = time.Now()
	for _, off := range offs {
		if _, err := f.ReadAt(small, off); err != nil {
			f.Close()
			return res, fmt.Errorf("random read: %w", err)
		}
	}
	res.RandReadOps = float64(len(offs)) / time.Since(start).Seconds()
	f.Close()
	return res, nil
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / (1 << 20) / d.Seconds() }

// alignedBuf returns n bytes aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	return b[off : off+n]
}

// Child runs the workload when this process was started as the
// benchmark's child (ChildEnv set) and writes the result as JSON to out;
// ok is false when it was not.
func Child(out io.Writer) (ok bool, code int) {
	dir := os.Getenv(ChildEnv)
	if dir == "" {
		return false, 0
	}
	mib, _ := strconv.Atoi(os.Getenv(SizeEnv))
	ops, _ := strconv.Atoi(os.Getenv(OpsEnv))
	res, err := Run(dir, Options{MiB: mib, Ops: ops, Seed: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "volbench:", err)
		return true, 1
	}
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return true, 1
	}
	return true, 0
}
