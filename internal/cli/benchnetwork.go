package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/network/netperf"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/verify/bench"
)

// goalNetworkRatio is issue 14's goal: a tenant network's throughput at
// least 0.9× a raw veth pair's; goalNetworkStart the start-time cost.
const (
	goalNetworkRatio = 0.9
	goalNetworkStart = 20 * time.Millisecond
)

func newBenchNetworkCmd() *cobra.Command {
	var seconds float64
	var rounds, runs, starts int
	cmd := &cobra.Command{
		Use:   "network [--seconds 2] [--rounds 2000] [--runs 5] [--starts 5]",
		Short: "TCP throughput and round trips between replicas, next to a raw veth pair; start time with and without a network",
		Long: `Makes namespace "nodes" of its own (nothing touches this machine's
network): two plain namespaces joined by a raw veth pair (the baseline),
one node with two container-tier replicas of one tenant, and a second node
joined to the first by a veth, with a replica of the same tenant. The rung
binary itself runs inside the replicas as the measuring tool (rung bench
netpeer), and as the raw pair's two ends. Prints the median one-byte round
trip and one stream's throughput per path (medians of --runs interleaved
runs) with its ratio to raw (goal: ≥
0.9×), and the median replica start time with and without a network (goal:
≤ +20 ms). Needs root, runc and busybox-static.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if seconds <= 0 || rounds < 1 || runs < 1 || starts < 1 {
				return withCode(ExitInvalid, errors.New("--seconds, --rounds, --runs and --starts must be positive"))
			}
			res, err := measureNetwork(cmd.Context(), time.Duration(seconds*float64(time.Second)), rounds, runs, starts, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			printBenchNetwork(cmd.OutOrStdout(), res)
			return nil
		},
	}
	cmd.Flags().Float64Var(&seconds, "seconds", 2, "seconds each stream runs")
	cmd.Flags().IntVar(&rounds, "rounds", 2000, "round trips per path")
	cmd.Flags().IntVar(&runs, "runs", 5, "interleaved measurements per path (medians printed)")
	cmd.Flags().IntVar(&starts, "starts", 5, "replica starts with and without a network")
	cmd.AddCommand(newBenchNetpeerCmd())
	return cmd
}

// newBenchNetpeerCmd is the measuring tool run inside replicas and
// namespaces: "serve PORT" or "measure ADDR ROUNDS SECONDS" (JSON out).
func newBenchNetpeerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "netpeer serve PORT | measure ADDR ROUNDS SECONDS",
		Hidden: true,
		Args:   cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "serve":
				ln, err := net.Listen("tcp4", ":"+args[1])
				if err != nil {
					return err
				}
				return netperf.Serve(ln)
			case "measure":
				if len(args) != 4 {
					return withCode(ExitInvalid, errors.New("measure ADDR ROUNDS SECONDS"))
				}
				rounds, err1 := strconv.Atoi(args[2])
				secs, err2 := strconv.ParseFloat(args[3], 64)
				if err1 != nil || err2 != nil {
					return withCode(ExitInvalid, errors.New("measure ADDR ROUNDS SECONDS"))
				}
				res, err := netperf.Measure(cmd.Context(), args[1], rounds, time.Duration(secs*float64(time.Second)))
				if err != nil {
					return err
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			return withCode(ExitInvalid, fmt.Errorf("netpeer %s: use serve or measure", args[0]))
		},
	}
}

type benchNetworkPath struct {
	Name      string         `json:"name"`
	Result    netperf.Result `json:"result"`
	Raw       netperf.Result `json:"raw"`
	Ratio     float64        `json:"throughputRatio"`
	MeetsGoal bool           `json:"meetsGoal"`
}

type benchNetworkResult struct {
	Date    time.Time          `json:"date"`
	Machine bench.Machine      `json:"machine"`
	Paths   []benchNetworkPath `json:"paths"`
	// Start times, medians over Starts runs.
	Runs           int           `json:"runs"`
	Starts         int           `json:"starts"`
	StartWith      time.Duration `json:"startWithNetworkNs"`
	StartWithout   time.Duration `json:"startWithoutNetworkNs"`
	StartMeetsGoal bool          `json:"startMeetsGoal"`
}

// benchNS makes a named network namespace with loopback up; remove it
// with the returned function.
func benchNS(name string) (netns.NsHandle, func(), error) {
	type made struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan made, 1)
	go func() {
		// The thread switches namespace and is then thrown away (no
		// UnlockOSThread), so no other code ever runs in it.
		goruntime.LockOSThread()
		h, err := netns.NewNamed(name)
		ch <- made{h, err}
	}()
	m := <-ch
	if m.err != nil {
		return 0, nil, fmt.Errorf("namespace %s: %w", name, m.err)
	}
	done := func() { m.h.Close(); _ = netns.DeleteNamed(name) }
	nl, err := netlink.NewHandleAt(m.h)
	if err != nil {
		done()
		return 0, nil, err
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		done()
		return 0, nil, err
	}
	return m.h, done, nil
}

// benchLink joins namespaces a and b with a veth pair carrying addresses
// aAddr and bAddr of one /24.
func benchLink(a, b netns.NsHandle, name string, aAddr, bAddr netip.Addr) error {
	la := netlink.NewLinkAttrs()
	la.Name = name + "a"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "b"}); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	for _, end := range []struct {
		name string
		ns   netns.NsHandle
		addr netip.Addr
	}{{name + "a", a, aAddr}, {name + "b", b, bAddr}} {
		l, err := netlink.LinkByName(end.name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(l, int(end.ns)); err != nil {
			return err
		}
		nl, err := netlink.NewHandleAt(end.ns)
		if err != nil {
			return err
		}
		l, err = nl.LinkByName(end.name)
		if err == nil {
			err = nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(end.addr.AsSlice()), Mask: net.CIDRMask(24, 32)}})
		}
		if err == nil {
			err = nl.LinkSetUp(l)
		}
		nl.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// startIn starts cmd with its network namespace ns: forked from a thread
// that joined ns and is thrown away after.
func startIn(ns netns.NsHandle, cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func measureNetwork(ctx context.Context, d time.Duration, rounds, runs, starts int, progress io.Writer) (benchNetworkResult, error) {
	res := benchNetworkResult{Date: time.Now(), Machine: bench.ThisMachine(ctx), Starts: starts, Runs: runs}
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	tag := strconv.Itoa(os.Getpid())
	secs := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	var cleanups []func()
	defer func() {
		for _, c := range slices.Backward(cleanups) {
			c()
		}
	}()
	ns := func(name string) (netns.NsHandle, error) {
		h, done, err := benchNS("rungbench-" + name + "-" + tag)
		if err == nil {
			cleanups = append(cleanups, done)
		}
		return h, err
	}

	// The baseline: two plain namespaces, a raw veth pair, the same tool.
	fmt.Fprintln(progress, "raw veth pair…")
	ra, err := ns("ra")
	if err != nil {
		return res, err
	}
	rb, err := ns("rb")
	if err != nil {
		return res, err
	}
	if err := benchLink(ra, rb, "rbr"+tag[max(0, len(tag)-6):], netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")); err != nil {
		return res, err
	}
	srv := exec.CommandContext(ctx, exe, "bench", "network", "netpeer", "serve", "5201")
	if err := startIn(ra, srv); err != nil {
		return res, err
	}
	cleanups = append(cleanups, func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	rawRun := func() ([]byte, error) {
		c := exec.CommandContext(ctx, exe, "bench", "network", "netpeer", "measure", "192.0.2.1:5201", strconv.Itoa(rounds), secs)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := startIn(rb, c); err != nil {
			return nil, err
		}
		err := c.Wait()
		return out.Bytes(), err
	}

	// Two namespace nodes joined by a veth, each with its tenant network.
	n1, err := ns("n1")
	if err != nil {
		return res, err
	}
	n2, err := ns("n2")
	if err != nil {
		return res, err
	}
	if err := benchLink(n1, n2, "rbu"+tag[max(0, len(tag)-6):], netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("/var/tmp", "rung-bench-network-")
	if err != nil {
		return res, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return res, err
	}
	cleanups = append(cleanups, func() { _ = os.RemoveAll(dir) })
	open := func(name string, h netns.NsHandle) (*replica.Node, *nodenet.Net, error) {
		nt, err := nodenet.Open(ctx, nodenet.Config{Dir: filepath.Join(dir, name, "network"), Scope: "b" + name + tag, NetNS: "/run/netns/rungbench-" + name + "-" + tag})
		if err != nil {
			return nil, nil, err
		}
		cleanups = append(cleanups, func() { nt.Close() })
		n, err := replica.Open(ctx, filepath.Join(dir, name), replica.Options{Attachers: []replica.Attacher{nt}, CgroupParent: "/rungbench/" + name + tag})
		if err != nil {
			return nil, nil, err
		}
		root, err := os.MkdirTemp("", "rung-bench-root-")
		if err != nil {
			return nil, nil, err
		}
		defer os.RemoveAll(root)
		if err := image.BusyboxRoot(root); err != nil {
			return nil, nil, err
		}
		bin, err := os.ReadFile(exe)
		if err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(filepath.Join(root, "rung"), bin, 0o755); err != nil {
			return nil, nil, err
		}
		if _, err := n.Images().Pack(ctx, root, "netbench:1", image.PackOptions{}); err != nil {
			return nil, nil, err
		}
		return n, nt, nil
	}
	node1, net1, err := open("n1", n1)
	if err != nil {
		return res, err
	}
	node2, net2, err := open("n2", n2)
	if err != nil {
		return res, err
	}
	spec := func(subnet string) *network.Spec {
		return &network.Spec{Pool: "10.203.0.0/16", Subnet: subnet, Workload: "bench"}
	}
	start := func(n *replica.Node, id string, s *network.Spec, args ...string) (time.Duration, error) {
		t0 := time.Now()
		err := n.Start(ctx, replica.Spec{ID: id, Tenant: "bench", Tier: tenancy.Container, Image: "netbench:1", Args: args, Network: s})
		took := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("start %s: %w", id, err)
		}
		cleanups = append(cleanups, func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
			defer cancel()
			_ = n.Remove(rctx, id)
		})
		return took, nil
	}
	fmt.Fprintln(progress, "replicas…")
	if _, err := start(node1, "bench-server-0", spec("10.203.1.0/24"), "/rung", "bench", "network", "netpeer", "serve", "5201"); err != nil {
		return res, err
	}
	if _, err := start(node1, "bench-client-0", spec("10.203.1.0/24"), "sleep", "3600"); err != nil {
		return res, err
	}
	if _, err := start(node2, "bench-client-1", spec("10.203.2.0/24"), "sleep", "3600"); err != nil {
		return res, err
	}
	srvAddr, _ := net1.Address("bench-server-0")
	c1, _ := net2.Address("bench-client-1")
	if err := net1.SetPeers(ctx, []nodenet.Peer{{Node: "n2", Underlay: netip.MustParseAddr("192.0.2.12"), Subnet: netip.MustParsePrefix("10.203.2.0/24"), Replicas: []network.Remote{{Tenant: "bench", Workload: "bench", Addr: c1}}}}); err != nil {
		return res, err
	}
	if err := net2.SetPeers(ctx, []nodenet.Peer{{Node: "n1", Underlay: netip.MustParseAddr("192.0.2.11"), Subnet: netip.MustParsePrefix("10.203.1.0/24"), Replicas: []network.Remote{{Tenant: "bench", Workload: "bench", Addr: srvAddr}}}}); err != nil {
		return res, err
	}
	inReplica := func(n *replica.Node, id string) func() ([]byte, error) {
		return func() ([]byte, error) {
			var out bytes.Buffer
			code, err := n.Exec(ctx, id, []string{"/rung", "bench", "network", "netpeer", "measure", srvAddr.String() + ":5201", strconv.Itoa(rounds), secs}, runtime.ExecIO{Stdout: &out, Stderr: &out})
			if err == nil && code != 0 {
				err = fmt.Errorf("exit %d", code)
			}
			return out.Bytes(), err
		}
	}
	// Interleaved runs (raw, one node, two nodes, again…): a shared
	// machine's load hits all paths alike; medians are printed.
	paths := []struct {
		name string
		run  func() ([]byte, error)
	}{{"raw", rawRun}, {"container, one node", inReplica(node1, "bench-client-0")}, {"container, two nodes", inReplica(node2, "bench-client-1")}}
	results := make([][]netperf.Result, len(paths))
	for i := range runs {
		for j, p := range paths {
			fmt.Fprintf(progress, "run %d/%d: %s…\n", i+1, runs, p.name)
			r, err := benchPeer(ctx, p.run)
			if err != nil {
				return res, fmt.Errorf("%s: %w", p.name, err)
			}
			results[j] = append(results[j], r)
		}
	}
	raw := medianResult(results[0])
	for j, p := range paths[1:] {
		r := medianResult(results[j+1])
		path := benchNetworkPath{Name: p.name, Result: r, Raw: raw, Ratio: r.BitsPerSecond / raw.BitsPerSecond}
		path.MeetsGoal = path.Ratio >= goalNetworkRatio
		res.Paths = append(res.Paths, path)
	}

	// Start time with and without a network, interleaved.
	fmt.Fprintln(progress, "start times…")
	var with, without []time.Duration
	for i := range starts {
		for _, withNet := range []bool{true, false} {
			id := fmt.Sprintf("bench-start-%d-%t", i, withNet)
			var s *network.Spec
			if withNet {
				s = spec("10.203.1.0/24")
			}
			took, err := start(node1, id, s, "sleep", "3600")
			if err != nil {
				return res, err
			}
			if withNet {
				with = append(with, took)
			} else {
				without = append(without, took)
			}
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err = node1.Remove(rctx, id)
			cancel()
			if err != nil {
				return res, err
			}
		}
	}
	res.StartWith, res.StartWithout = benchMedian(with), benchMedian(without)
	res.StartMeetsGoal = res.StartWith-res.StartWithout <= goalNetworkStart
	return res, nil
}

// benchPeer runs one measurement and decodes its JSON; servers start in
// their own time, so a refused first try is retried for a minute.
func benchPeer(ctx context.Context, run func() ([]byte, error)) (netperf.Result, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := run()
		if err == nil {
			var r netperf.Result
			if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
				return r, fmt.Errorf("netpeer said %q: %w", out, err)
			}
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return netperf.Result{}, fmt.Errorf("%w: %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// medianResult takes the median round trip and throughput of runs.
func medianResult(rs []netperf.Result) netperf.Result {
	var rtt []time.Duration
	var bps []float64
	for _, r := range rs {
		rtt = append(rtt, r.RTT)
		bps = append(bps, r.BitsPerSecond)
	}
	slices.Sort(bps)
	return netperf.Result{RTT: benchMedian(rtt), BitsPerSecond: bps[len(bps)/2]}
}

func benchMedian(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func printBenchNetwork(w io.Writer, r benchNetworkResult) {
	m := r.Machine
	fmt.Fprintf(w, "rung bench network, %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %d CPU(s), %s, kernel %s, %s, load %s\n", m.CPUs, m.Model, m.Kernel, m.Go, m.Load)
	fmt.Fprintf(w, "\nTCP between replicas of one tenant vs a raw veth pair between two plain namespaces, medians of %d interleaved runs (goal: throughput ≥ %.1f× raw)\n", r.Runs, goalNetworkRatio)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tTHROUGHPUT\tRAW\tRATIO\tRTT\tRAW RTT\tGOAL")
	for _, p := range r.Paths {
		goal := "met"
		if !p.MeetsGoal {
			goal = "missed"
		}
		fmt.Fprintf(tw, "%s\t%.2f Gbit/s\t%.2f Gbit/s\t%.2f\t%d µs\t%d µs\t%s\n", p.Name, p.Result.BitsPerSecond/1e9, p.Raw.BitsPerSecond/1e9, p.Ratio,
			p.Result.RTT.Microseconds(), p.Raw.RTT.Microseconds(), goal)
	}
	fmt.Fprintln(tw, "sandbox\t-\t-\t-\t-\t-\trefused: runsc --network=sandbox not run yet (docs/networks.md)")
	tw.Flush()
	goal := "met"
	if !r.StartMeetsGoal {
		goal = "missed"
	}
	fmt.Fprintf(w, "\nreplica start (prepare, create, link, start), median of %d: %s with a network, %s without, +%s (goal ≤ +%s: %s)\n",
		r.Starts, benchMs(r.StartWith), benchMs(r.StartWithout), benchMs(r.StartWith-r.StartWithout), benchMs(goalNetworkStart), goal)
}
