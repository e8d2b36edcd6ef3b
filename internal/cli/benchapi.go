package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/app"
	"rung.dev/rung/internal/client"
)

// benchAPIOptions bound one `rung bench api` run.
type benchAPIOptions struct {
	clients   int
	requests  int
	duration  time.Duration
	workloads int // distinct workloads each client cycles through
	// listers and badTokens are the load of the second run: clients
	// listing the workloads all along, and requests with a wrong token.
	listers   int
	badTokens int
	// badRate is the flood's offered rate (requests/s); with a flood both
	// runs last as long as it does (badTokens/badRate), not --requests.
	badRate float64
	// decodeLists makes the listers decode every page as the typed client
	// does (their CPU then shares this machine with the server's).
	decodeLists bool
	store       string // the embedded control plane's store (default bolt)
	// cpuProfile, when set, is where the run's CPU profile goes (the
	// embedded control plane and the clients share the process).
	cpuProfile string
}

// benchAPIResult is what a run measured.
type benchAPIResult struct {
	Requests   int
	Errors     int
	FirstError error
	Elapsed    time.Duration
	// CPU is the process's CPU time (user and system) during the run:
	// the control plane's and the clients' when it is embedded. Per
	// apply, it depends far less on the machine's other work than the
	// rate does.
	CPU      time.Duration
	P50, P99 time.Duration
	Max      time.Duration
}

func newBenchAPICmd() *cobra.Command {
	var (
		cf   clientFlags
		opts benchAPIOptions
	)
	cmd := &cobra.Command{
		Use:   "api [--clients 50] [--requests 5000] [--duration 60s] [--listers 20] [--bad-tokens 20000]",
		Short: "Load the API with concurrent applies: applies/s and p99 latency",
		Long: `Starts a control plane on loopback in a temporary directory (or uses
--server), then runs --clients concurrent clients, each applying its own
workloads (creates, then updates) until --requests applies are done or
--duration passes. Prints applies/s, p50/p99/max latency and the error
count, and for the embedded control plane the memory and store size per
10,000 stored replicas. With --listers or --bad-tokens, a second run
applies while that load runs (clients listing the workloads; requests
with a wrong token) and prints its figures as ratios to the first run's:
the machine's other work cancels out. The flood is sent by a process of its
own from 127.0.0.2 at --bad-token-rate per second (open loop, up to 64
connections), in 4 slices interleaved with 4 slices of applies alone, each
as long as a quarter of the flood. --store runs the
embedded control plane on etcd://HOST:PORT instead of its bbolt file.
Exit 1 on any error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.clients < 1 || opts.requests < 1 || opts.duration <= 0 || opts.workloads < 1 || opts.badRate <= 0 {
				return withCode(ExitInvalid, errors.New("--clients, --requests, --workloads, --duration and --bad-token-rate must be positive"))
			}
			if opts.badTokens > 0 && opts.listers > 0 {
				return withCode(ExitInvalid, errors.New("--bad-tokens and --listers: measure one load at a time"))
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			var c *client.Client
			var dataDir string
			if cmd.Flags().Changed("server") {
				var err error
				if c, err = cf.client(); err != nil {
					return err
				}
			} else {
				dir, err := os.MkdirTemp("", "rung-bench-api-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				dataDir = filepath.Join(dir, "data")
				upCtx, stop := context.WithCancel(ctx)
				infoc := make(chan app.Info, 1)
				done := make(chan error, 1)
				go func() {
					done <- app.Up(upCtx, app.Config{DataDir: dataDir, Listen: "127.0.0.1:0", ClientConfig: "-", Store: opts.store}, nil,
						func(i app.Info) { infoc <- i })
				}()
				defer func() { stop(); <-done }()
				select {
				case <-infoc:
				case err := <-done:
					return fmt.Errorf("start control plane: %w", err)
				}
				cfg, err := client.LoadConfig(filepath.Join(dataDir, app.ClientConfigFile))
				if err != nil {
					return err
				}
				if c, err = client.New(cfg.Server, cfg.Token); err != nil {
					return err
				}
			}
			if opts.cpuProfile != "" {
				f, err := os.Create(opts.cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			if opts.badTokens == 0 {
				fmt.Fprintf(out, "rung bench api: %d clients, at most %d applies or %v, against %s\n",
					opts.clients, opts.requests, opts.duration, c.Server())
			}
			var before runtime.MemStats
			if dataDir != "" {
				runtime.GC()
				runtime.ReadMemStats(&before)
			}
			var res benchAPIResult
			var err error
			if opts.badTokens > 0 {
				res, err = benchAPIFlood(ctx, out, c, opts)
			} else if res, err = benchAPI(ctx, c, opts, "alone"); err == nil {
				printBenchAPI(out, res)
			}
			if err != nil {
				return err
			}
			if opts.listers > 0 {
				loaded, err := benchAPIUnderLoad(ctx, out, c, opts, res)
				if err != nil {
					return err
				}
				res.Errors += loaded.Errors
				if res.FirstError == nil {
					res.FirstError = loaded.FirstError
				}
			}
			if dataDir != "" {
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				replicas := opts.clients * min(opts.workloads, (min(opts.requests, res.Requests)+opts.clients-1)/opts.clients) * benchReplicas
				if fi, err := os.Stat(filepath.Join(dataDir, "store.db")); err == nil && replicas > 0 {
					per := 10000 / float64(replicas)
					fmt.Fprintf(out, "stored: ~%d replicas; heap in use +%.1f MiB, store file %.1f MiB (per 10,000 replicas: heap %.1f MiB, store %.1f MiB)\n",
						replicas, mib(int64(after.HeapInuse)-int64(before.HeapInuse)), mib(fi.Size()),
						mib(int64(after.HeapInuse)-int64(before.HeapInuse))*per, mib(fi.Size())*per)
				}
			}
			if res.Errors > 0 {
				return fmt.Errorf("%d of %d applies failed; first: %w", res.Errors, res.Requests, res.FirstError)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.AddCommand(newBenchFloodpeerCmd())
	fl := cmd.Flags()
	fl.IntVar(&opts.clients, "clients", 50, "concurrent clients")
	fl.IntVar(&opts.requests, "requests", 5000, "total applies")
	fl.DurationVar(&opts.duration, "duration", 60*time.Second, "stop after this long")
	fl.IntVar(&opts.workloads, "workloads", 20, "distinct workloads per client (applies cycle through them)")
	fl.IntVar(&opts.listers, "listers", 0, "a second run with this many clients listing the workloads meanwhile")
	fl.BoolVar(&opts.decodeLists, "decode-lists", false, "listers decode every page as the typed client does (by default they read the bytes only, as clients on other machines: their decoding is not the server's work)")
	fl.IntVar(&opts.badTokens, "bad-tokens", 0, "applies with and without this many requests with a wrong token meanwhile (sent by a process of their own at --bad-token-rate), interleaved; instead of --requests, the runs last as long as the flood")
	fl.Float64Var(&opts.badRate, "bad-token-rate", 2000, "the bad-token flood's offered rate, requests per second (open loop)")
	fl.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of the runs (control plane and clients) to this file")
	fl.StringVar(&opts.store, "store", "", "the embedded control plane's store: bolt (default) or etcd://HOST:PORT[/PREFIX]")
	return cmd
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// benchReplicas is the replicas of each bench workload.
const benchReplicas = 10

// benchAPI sets up a tenant and runs the load.
func benchAPI(ctx context.Context, c *client.Client, opts benchAPIOptions, run string) (benchAPIResult, error) {
	tenant := v1.Tenant{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTenant},
		Metadata: v1.ObjectMeta{Name: "bench"},
	}
	if _, err := c.Apply(ctx, &tenant); err != nil {
		return benchAPIResult{}, fmt.Errorf("set up: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.duration)
	defer cancel()
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, min(opts.requests, 1<<20))
		res       benchAPIResult
		wg        sync.WaitGroup
	)
	cpu := resource.MustParse("100m")
	mem := resource.MustParse("64Mi")
	start, cpu0 := time.Now(), processCPU()
	for i := range opts.clients {
		wg.Go(func() {
			for j := 0; ; j++ {
				if n := next.Add(1); n > int64(opts.requests) || ctx.Err() != nil {
					return
				}
				replicas := benchReplicas
				w := v1.Workload{
					TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkload},
					Metadata: v1.ObjectMeta{Name: fmt.Sprintf("c%d-w%d", i, j%opts.workloads), Tenant: "bench",
						Labels: map[string]string{"run": run, "round": fmt.Sprint(j / opts.workloads)}},
					Spec: v1.WorkloadSpec{Image: "busybox:latest", Replicas: &replicas,
						Resources: v1.Resources{CPU: &cpu, Memory: &mem}},
				}
				t0 := time.Now()
				_, err := c.Apply(ctx, &w)
				d := time.Since(t0)
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
					return // the run's time is up; not an API error
				}
				mu.Lock()
				res.Requests++
				latencies = append(latencies, d)
				if err != nil {
					res.Errors++
					if res.FirstError == nil {
						res.FirstError = err
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed, res.CPU = time.Since(start), processCPU()-cpu0
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		res.P50 = latencies[n/2]
		res.P99 = latencies[min(n-1, n*99/100)]
		res.Max = latencies[n-1]
	}
	return res, nil
}

func printBenchAPI(w io.Writer, r benchAPIResult) {
	rate := float64(r.Requests) / r.Elapsed.Seconds()
	fmt.Fprintf(w, "applies: %d in %v (%.0f/s), errors %d\n", r.Requests, r.Elapsed.Round(time.Millisecond), rate, r.Errors)
	fmt.Fprintf(w, "latency: p50 %v, p99 %v, max %v\n", r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond))
	if r.Requests > 0 && r.CPU > 0 {
		fmt.Fprintf(w, "cpu: %v per apply (this process: %v in all, %.0f%% of a core)\n",
			(r.CPU / time.Duration(r.Requests)).Round(time.Microsecond), r.CPU.Round(time.Millisecond), 100*r.CPU.Seconds()/r.Elapsed.Seconds())
	}
}

// processCPU is the CPU time this process has used (0 if unknown).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
