// Package etcdtest starts real etcd servers for tests: one member or a
// small cluster on loopback, on free ports, with data in the test's temp
// directory, stopped when the test ends. Tests skip, saying why, when no
// etcd binary is installed (Debian package etcd-server provides
// /usr/bin/etcd; RUNG_ETCD names another binary).
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// startTimeout bounds how long a cluster may take to become healthy.
const startTimeout = 30 * time.Second

// Binary finds the etcd binary: $RUNG_ETCD, then etcd on PATH, then
// /usr/bin/etcd.
func Binary() (string, error) {
	if b := os.Getenv("RUNG_ETCD"); b != "" {
		return b, nil
	}
	if b, err := exec.LookPath("etcd"); err == nil {
		return b, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", errors.New("no etcd binary: install Debian package etcd-server (apt-get install -y etcd-server) or set RUNG_ETCD")
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dataDir   string

	cmd    *exec.Cmd
	args   []string // to start it again on its data directory
	out    *syncBuffer
	exited chan struct{}
	err    error
}

// Cluster is a set of etcd members started together.
type Cluster struct {
	Members []*Member
}

// Endpoints are the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Start starts an n-member etcd cluster on 127.0.0.1 and waits until
// every member reports healthy. It skips the test when etcd is not
// installed and fails it when etcd does not come up.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skip(err)
	}
	var lastErr error
	for attempt := range 3 { // a free port can be taken between choosing and binding
		c, err := start(t, bin, n, attempt)
		if err == nil {
			return c
		}
		lastErr = err
		t.Logf("etcd start attempt %d: %v", attempt+1, err)
	}
	t.Fatalf("start etcd: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, n, attempt int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			dataDir:   filepath.Join(t.TempDir(), fmt.Sprintf("etcd-%d-%d", attempt, i)),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	token := fmt.Sprintf("rung-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, m := range c.Members {
		m.cmd = exec.Command(bin,
			"--name", m.Name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--heartbeat-interval", "50",
			"--election-timeout", "500",
			"--logger", "zap",
			"--log-level", "error",
		)
		m.args = m.cmd.Args
		m.out = &syncBuffer{}
		if err := m.run(); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitHealthy(); err != nil {
		c.stop()
		return nil, err
	}
	t.Cleanup(c.stop)
	return c, nil
}

// run starts m's process from m.args.
func (m *Member) run() error {
	m.cmd = exec.Command(m.args[0], m.args[1:]...)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.args[0], err)
	}
	exited := make(chan struct{})
	m.exited = exited
	cmd := m.cmd
	go func() { m.err = cmd.Wait(); close(exited) }()
	return nil
}

// Restart starts member i again, killed before (Kill), on its data
// directory and ports, and waits until the cluster is healthy.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	m := c.Members[i]
	select {
	case <-m.exited:
	default:
		t.Fatalf("etcd %s: restart: still running; Kill it first", m.Name)
	}
	if err := m.run(); err != nil {
		t.Fatal(err)
	}
	if err := c.waitHealthy(); err != nil {
		t.Fatalf("etcd %s: restart: %v", m.Name, err)
	}
}

// waitHealthy polls every member's /health until all have a leader.
func (c *Cluster) waitHealthy() error {
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	for _, m := range c.Members {
		for {
			select {
			case <-m.exited:
				return fmt.Errorf("etcd %s exited: %v\n%s", m.Name, m.err, m.out.tail())
			default:
			}
			resp, err := client.Get(m.ClientURL + "/health")
			if err == nil {
				var body bytes.Buffer
				body.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && strings.Contains(body.String(), `"true"`) {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("etcd %s not healthy after %v\n%s", m.Name, startTimeout, m.out.tail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Kill kill -9s member i and waits for it to exit.
func (c *Cluster) Kill(i int) {
	m := c.Members[i]
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-m.exited
}

// stop terminates every member still running, killing those that do not
// exit within two seconds (a leader that lost its peers waits longer).
func (c *Cluster) stop() {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		if m.cmd == nil || m.cmd.Process == nil || m.exited == nil {
			continue
		}
		wg.Go(func() {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(2 * time.Second):
				_ = m.cmd.Process.Signal(syscall.SIGKILL)
				<-m.exited
			}
		})
	}
	wg.Wait()
}

// Leader returns the index of the member that currently leads, or -1
// when no live member knows one.
func (c *Cluster) Leader(ctx context.Context) int {
	for i, m := range c.Members {
		select {
		case <-m.exited:
			continue
		default:
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		cli.Close()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i
		}
	}
	return -1
}

// freePorts reserves n distinct free loopback ports and releases them.
func freePorts(n int) ([]int, error) {
	var (
		ports []int
		lns   []net.Listener
	)
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// syncBuffer collects a process's output for error messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}
