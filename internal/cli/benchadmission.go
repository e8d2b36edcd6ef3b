package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/scan"
	"rung.dev/rung/internal/verify/bench"
	"rung.dev/rung/internal/vulndb"
)

// Goal of issue 6 for the admission benchmark.
const goalAdmissionAdvisories = 100_000

// admissionPackageSource says where the package list of `rung bench
// admission` comes from.
const admissionPackageSource = "embedded real Debian 12 dpkg status (internal/scan/testdata/dpkg-status-full.gz)"

// admissionOptions are the flags of `rung bench admission`.
type admissionOptions struct {
	Advisories int
	Runs       int
	MinTime    time.Duration
	Dir        string
}

// admissionMachine is what the figures were measured on.
type admissionMachine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"model"`
	Kernel string `json:"kernel"`
	OS     string `json:"os"`
	Go     string `json:"go"`
	Load   string `json:"load"`
}

// admissionResult is the outcome of `rung bench admission` (its -o json).
type admissionResult struct {
	Date    time.Time        `json:"date"`
	Machine admissionMachine `json:"machine"`

	PackageSource string `json:"packageSource"`
	Packages      int    `json:"packages"`
	Advisories    int    `json:"advisories"`
	Runs          int    `json:"runs"`

	// Database build: generating the records, importing them into bbolt,
	// and the file's size.
	Generate time.Duration `json:"generate"`
	Import   time.Duration `json:"import"`
	DBBytes  int64         `json:"dbBytes"`

	// The package list scanned against the database, indexed (scan.Match
	// on vulndb) and linear (scan.Linear over the records in memory),
	// interleaved; the same findings are asserted.
	Indexed      bench.Stats `json:"indexed"`
	Linear       bench.Stats `json:"linear"`
	Speedup      float64     `json:"speedup"` // linear median / indexed median
	Findings     int         `json:"findings"`
	IndexedAlloc uint64      `json:"indexedAllocBytes"` // per scan
	LinearAlloc  uint64      `json:"linearAllocBytes"`  // per scan

	// Heap: the records the linear baseline keeps in memory, and the heap
	// in use (after GC) with the database open and the records dropped.
	RecordsHeap uint64 `json:"recordsHeapBytes"`
	IndexedHeap uint64 `json:"indexedHeapBytes"`

	// Whole-image admission of a busybox image carrying the same Debian
	// package list, packed in a temporary store: scan.Inspect with the
	// database, then policy Engine.Image.
	Images          int           `json:"images"`
	ImagesPerSecond float64       `json:"imagesPerSecond"`
	Image           bench.Stats   `json:"image"`
	ImageAlloc      uint64        `json:"imageAllocBytes"` // per image
	ImageBytes      int64         `json:"imageBytes"`      // uncompressed layer
	Decision        string        `json:"decision"`
	ImageFindings   int           `json:"imageFindings"`
	PeakRSS         int64         `json:"peakRSSBytes"`
	Elapsed         time.Duration `json:"elapsed"`
}

// newBenchAdmissionCmd is `rung bench admission`: image admission speed
// against a generated OSV database, next to a linear baseline, in one run.
func newBenchAdmissionCmd() *cobra.Command {
	o := admissionOptions{}
	var output string
	cmd := &cobra.Command{
		Use:   "admission",
		Short: "Image admission speed against a generated OSV database, next to a linear scan",
		Long: `Generates an OSV database of --advisories records (5% of them against the
image's source packages; vulndbtest.Generate, seed 1) into a temporary
directory and reports its build time and size. Then scans the package list
of a real Debian 12 image (744 packages, embedded from
internal/scan/testdata) against it N times with rung's index (scan.Match on
vulndb) and N times with a linear scan of every record for every package
(the baseline), interleaved, asserting the same findings, and prints the
medians, their ratio and the bytes allocated per scan. Last, packs a busybox
image carrying that package list into a temporary store and admits it
(scan.Inspect with the database, then the policy engine) repeatedly:
images per second and heap. Needs ` + image.BusyboxPath + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Advisories < 1 || o.Runs < 1 {
				return withCode(ExitInvalid, errors.New("--advisories and --runs must be at least 1"))
			}
			if output != "text" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: use text or json", output))
			}
			errw := cmd.ErrOrStderr()
			progress := func(format string, a ...any) {
				if output == "text" && isTerminal(errw) {
					fmt.Fprintf(errw, "\r\033[K"+format, a...)
				}
			}
			res, err := runBenchAdmission(cmd, o, progress)
			progress("")
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			printBenchAdmission(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Advisories, "advisories", goalAdmissionAdvisories, "OSV records in the generated database")
	f.IntVarP(&o.Runs, "runs", "n", 10, "scans per path, and at least this many image admissions")
	f.DurationVar(&o.MinTime, "min-time", 2*time.Second, "admit the image for at least this long")
	f.StringVar(&o.Dir, "dir", "", "work directory for the database and image store (default: a new temporary directory)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runBenchAdmission(cmd *cobra.Command, o admissionOptions, progress func(string, ...any)) (admissionResult, error) {
	ctx := cmd.Context()
	begin := time.Now()
	res := admissionResult{Date: begin.UTC(), Machine: admissionMachineInfo(), PackageSource: admissionPackageSource,
		Advisories: o.Advisories, Runs: o.Runs}
	dir := o.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "rung-bench-admission-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}

	status, err := scan.DebianStatus()
	if err != nil {
		return res, fmt.Errorf("bench admission: %w", err)
	}
	pkgs, err := scan.DebianPackages()
	if err != nil {
		return res, fmt.Errorf("bench admission: %w", err)
	}
	res.Packages = len(pkgs)

	// The database.
	progress("generating %d records", o.Advisories)
	heap0 := heapInUse()
	start := time.Now()
	entries := scan.AdmissionEntries(o.Advisories, pkgs)
	res.Generate = time.Since(start)
	res.RecordsHeap = sub(heapInUse(), heap0)
	path := filepath.Join(dir, "vulndb.db")
	db, err := vulndb.Open(ctx, path, vulndb.Options{})
	if err != nil {
		return res, fmt.Errorf("bench admission: %w", err)
	}
	defer db.Close()
	progress("importing %d records", o.Advisories)
	start = time.Now()
	if _, err := db.Put(ctx, entries, time.Now()); err != nil {
		return res, fmt.Errorf("bench admission: %w", err)
	}
	res.Import = time.Since(start)
	if fi, err := os.Stat(path); err == nil {
		res.DBBytes = fi.Size()
	}

	// Indexed and linear, interleaved.
	var indexed, linear []time.Duration
	var indexedAlloc, linearAlloc uint64
	var want []string
	for i := range o.Runs {
		progress("scan %d/%d", i+1, o.Runs)
		a0 := totalAlloc()
		t0 := time.Now()
		got, err := scan.Match(ctx, db, pkgs)
		if err != nil {
			return res, fmt.Errorf("bench admission: %w", err)
		}
		indexed = append(indexed, time.Since(t0))
		a1 := totalAlloc()
		t1 := time.Now()
		base := scan.Linear(entries).Match(pkgs)
		linear = append(linear, time.Since(t1))
		indexedAlloc += a1 - a0
		linearAlloc += totalAlloc() - a1
		gk, bk := scan.VulnKeys(got), scan.VulnKeys(base)
		if !slices.Equal(gk, bk) {
			return res, fmt.Errorf("bench admission: indexed found %d vulnerabilities, linear %d: they must agree (scanner bug)", len(gk), len(bk))
		}
		if want == nil {
			want = gk
		} else if !slices.Equal(want, gk) {
			return res, errors.New("bench admission: indexed scan is not deterministic (scanner bug)")
		}
	}
	res.Findings = len(want)
	res.Indexed, res.Linear = bench.StatsOf(indexed), bench.StatsOf(linear)
	if res.Indexed.Median > 0 {
		res.Speedup = float64(res.Linear.Median) / float64(res.Indexed.Median)
	}
	res.IndexedAlloc = indexedAlloc / uint64(o.Runs)
	res.LinearAlloc = linearAlloc / uint64(o.Runs)
	entries = nil
	res.IndexedHeap = heapInUse()

	// Whole-image admission.
	progress("packing the image")
	img, size, err := admissionImage(cmd, dir, status)
	if err != nil {
		return res, fmt.Errorf("bench admission: %w", err)
	}
	res.ImageBytes = size
	eng, err := policy.New(policy.Config{})
	if err != nil {
		return res, fmt.Errorf("bench admission: %w", err)
	}
	var samples []time.Duration
	a0 := totalAlloc()
	start = time.Now()
	for len(samples) < o.Runs || time.Since(start) < o.MinTime {
		t0 := time.Now()
		r, err := scan.Inspect(ctx, img, scan.Options{Advisories: db})
		if err != nil {
			return res, fmt.Errorf("bench admission: inspect: %w", err)
		}
		d := eng.Image(policy.ImageInput{Ref: "bench-admission:latest", Facts: r.Facts, Now: time.Now()})
		samples = append(samples, time.Since(t0))
		if len(samples) == 1 {
			if len(r.Facts.Packages) != len(pkgs) {
				return res, fmt.Errorf("bench admission: the image has %d packages, want %d", len(r.Facts.Packages), len(pkgs))
			}
			if got := scan.VulnKeys(r.Facts.Vulnerabilities); !slices.Equal(got, want) {
				return res, fmt.Errorf("bench admission: image admission found %d vulnerabilities, the scan %d (scanner bug)", len(got), len(want))
			}
			res.Decision = "allowed"
			if !d.Allowed {
				res.Decision = "denied"
			}
			res.ImageFindings = len(d.Findings)
		}
		progress("admission %d", len(samples))
	}
	elapsed := time.Since(start)
	res.Images = len(samples)
	res.ImagesPerSecond = float64(len(samples)) / elapsed.Seconds()
	res.Image = bench.StatsOf(samples)
	res.ImageAlloc = (totalAlloc() - a0) / uint64(len(samples))
	res.PeakRSS = peakRSS()
	res.Elapsed = time.Since(begin)
	return res, nil
}

// admissionImage packs a busybox root with Debian 12's os-release and the
// given dpkg status into a store under dir and returns the image and the
// size of the packed files.
func admissionImage(cmd *cobra.Command, dir string, status []byte) (img v1.Image, size int64, err error) {
	ctx := cmd.Context()
	root := filepath.Join(dir, "root")
	if err := image.BusyboxRoot(root); err != nil {
		return nil, 0, err
	}
	for name, body := range map[string][]byte{
		"etc/os-release":      scan.DebianOSRelease(),
		"var/lib/dpkg/status": status,
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, 0, err
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return nil, 0, err
		}
	}
	filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	s, err := image.Open(ctx, filepath.Join(dir, "store"))
	if err != nil {
		return nil, 0, err
	}
	const tag = "bench-admission:latest"
	if _, err := s.Pack(ctx, root, tag, image.PackOptions{}); err != nil {
		return nil, 0, err
	}
	img, _, err = s.Resolve(ctx, tag)
	if err != nil {
		return nil, 0, err
	}
	return img, size, nil
}

// printBenchAdmission writes the result as tables, dated, with the machine.
func printBenchAdmission(w io.Writer, r admissionResult) {
	m := r.Machine
	fmt.Fprintf(w, "rung bench admission, %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %d CPU(s), %s, kernel %s, %s, %s, load %s\n", m.CPUs, m.Model, m.Kernel, m.OS, m.Go, m.Load)
	fmt.Fprintf(w, "packages: %d, %s\n", r.Packages, r.PackageSource)
	fmt.Fprintf(w, "database: %d generated OSV records (%s, 5%% against the image's source packages, seed 1); generate %s, import %s, file %s\n",
		r.Advisories, scan.AdmissionEcosystem, benchMs(r.Generate), benchMs(r.Import), benchMiB(r.DBBytes))

	fmt.Fprintf(w, "\nscan of the package list, %d runs per path, interleaved; both find the same %d vulnerabilities\n", r.Runs, r.Findings)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tMEDIAN\tP90\tMIN\tPACKAGES/S\tALLOC/SCAN\tHEAP")
	row := func(name string, s bench.Stats, alloc, heap uint64, heapNote string) {
		pps := 0.0
		if s.Median > 0 {
			pps = float64(r.Packages) / s.Median.Seconds()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t%s %s\n", name, benchMs(s.Median), benchMs(s.P90), benchMs(s.Min), pps,
			benchMiB(int64(alloc)), benchMiB(int64(heap)), heapNote)
	}
	row("indexed (rung)", r.Indexed, r.IndexedAlloc, r.IndexedHeap, "(process, records dropped; db mmapped)")
	row("linear (baseline)", r.Linear, r.LinearAlloc, r.RecordsHeap, "(records in memory)")
	tw.Flush()
	fmt.Fprintf(w, "indexed is %.1f× faster than linear (median)\n", r.Speedup)

	fmt.Fprintf(w, "\nwhole-image admission (scan.Inspect with the database, then policy Engine.Image) of a busybox image\n")
	fmt.Fprintf(w, "with the same package list (%s of files) from a temporary store; decision: %s, %d finding(s)\n",
		benchMiB(r.ImageBytes), r.Decision, r.ImageFindings)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGES\tIMAGES/S\tMEDIAN\tP90\tALLOC/IMAGE\tPEAK RSS")
	fmt.Fprintf(tw, "%d\t%.1f\t%s\t%s\t%s\t%s\n", r.Images, r.ImagesPerSecond, benchMs(r.Image.Median), benchMs(r.Image.P90),
		benchMiB(int64(r.ImageAlloc)), benchMiB(r.PeakRSS))
	tw.Flush()
	fmt.Fprintf(w, "\ntotal %s\n", r.Elapsed.Round(time.Millisecond))
}

func admissionMachineInfo() admissionMachine {
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(string(b))
	}
	load := strings.Fields(read("/proc/loadavg"))
	return admissionMachine{
		CPUs: runtime.NumCPU(), Model: cpuModel("/proc/cpuinfo"), Kernel: read("/proc/sys/kernel/osrelease"),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Load: strings.Join(load[:min(3, len(load))], " "),
	}
}

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// peakRSS returns the process's peak resident set (VmHWM), or 0.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if k, v, ok := strings.Cut(string(line), ":"); ok && k == "VmHWM" {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}
