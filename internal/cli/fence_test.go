package cli

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
)

// partition is a TCP forwarder to the control plane that can be cut: once
// cut, it closes every forwarded connection and holds new ones open
// without answering (a black hole, as a lost network looks).
type partition struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newPartition(t *testing.T, target string) *partition {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			cut := p.cut
			p.mu.Unlock()
			if cut {
				continue // held open, never answered
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *partition) URL() string { return "http://" + p.ln.Addr().String() }

// Cut drops every forwarded connection and answers nothing from now on.
func (p *partition) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestFencePartitionedAgent is DESIGN §11's fencing with real runc: two
// `rung agent`s run one replica each; n2 is cut off from the control plane
// (its connections black-holed) while its replica runs. n2 stops its
// replica when its lease expires, and only after that does the control
// plane re-place it on n1: sampled all along, the replica never runs on
// both nodes at once. (A node whose lease is renewed runs what the plan
// says again: TestFence.)
func TestFencePartitionedAgent(t *testing.T) {
	h := newAgentHarness(t, 6*time.Second, hostSpread(2)) // a lease of 4.5s
	dir, op := h.dir, h.op
	ctx := t.Context()

	nodes := []string{"n1", "n2"}
	proxies := map[string]*partition{}
	for _, n := range nodes {
		proxies[n] = newPartition(t, strings.TrimPrefix(h.info.URL, "http://"))
		h.StartAt(proxies[n].URL(), agentConfig{Node: n, Interval: 200 * time.Millisecond})
	}
	before := placements(t, op)
	want := map[string][]string{}
	for k, n := range before {
		want[n] = append(want[n], "acme-web-"+strings.TrimSuffix(strings.TrimPrefix(k, "acme/web["), "]"))
	}
	if len(want["n1"]) != 1 || len(want["n2"]) != 1 {
		t.Fatalf("placements %v, want one replica on each node", before)
	}
	waitRunning(t, dir, want)
	victim := want["n2"][0]

	// Sample both nodes until the end: the victim never runs on both.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan int, 1)
	opened := map[string]*replica.Node{}
	for _, n := range nodes {
		rn, err := replica.Open(ctx, filepath.Join(dir, n), replica.Options{})
		if err != nil {
			t.Fatal(err)
		}
		opened[n] = rn
	}
	go func() {
		rounds := 0
		defer func() { sampled <- rounds }()
		for sampleCtx.Err() == nil {
			if on := runningOn(sampleCtx, opened, victim); len(on) > 1 {
				t.Errorf("%s runs on %v at once", victim, on)
				return
			}
			rounds++
			time.Sleep(20 * time.Millisecond)
		}
	}()

	cut := time.Now()
	proxies["n2"].Cut()
	// n2 stops its replica when its lease ends; the control plane moves it
	// to n1 only after its node timeout.
	want = map[string][]string{"n1": {want["n1"][0], victim}, "n2": nil}
	if victim < want["n1"][0] {
		want["n1"] = []string{victim, want["n1"][0]}
	}
	waitRunning(t, dir, want)
	t.Logf("%s fenced on n2 and running on n1 %v after the cut", victim, time.Since(cut).Round(100*time.Millisecond))
	stopSampling()
	if n := <-sampled; n == 0 {
		t.Error("never sampled the nodes")
	}
}

// runningOn lists the nodes where replica id runs under runc.
func runningOn(ctx context.Context, nodes map[string]*replica.Node, id string) []string {
	var on []string
	for n, rn := range nodes {
		if st, err := rn.State(ctx, id); err == nil && st.Status == runtime.Running {
			on = append(on, n)
		}
	}
	return on
}
