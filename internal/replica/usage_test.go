package replica

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/google/go-cmp/cmp"
)

func TestUsageParsers(t *testing.T) {
	stat := []byte("nr_periods 12\nnr_throttled 3\nthrottled_time 4500\nnr_bursts 0\n")
	got := []int64{field(stat, "nr_periods"), field(stat, "nr_throttled"), field(stat, "throttled_time"), field(stat, "nr_burst"), field(stat, "missing")}
	if diff := cmp.Diff([]int64{12, 3, 4500, 0, 0}, got); diff != "" {
		t.Errorf("field (-want +got):\n%s", diff)
	}
	psi := []byte("some avg10=1.00 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=99\n")
	if got := pressureTotal(psi); got != 123456*time.Microsecond {
		t.Errorf("pressureTotal = %v", got)
	}
	if got := pressureTotal([]byte("garbage")); got != -1 {
		t.Errorf("pressureTotal(garbage) = %v, want -1", got)
	}
	r, w := blkioBytes([]byte("8:0 Read 4096\n8:0 Write 100\n8:16 Read 1\n8:0 Total 4197\nTotal 4197\n"))
	if r != 4097 || w != 100 {
		t.Errorf("blkioBytes = %d, %d", r, w)
	}
	r, w = ioStatBytes([]byte("8:0 rbytes=10 wbytes=20 rios=1 wios=2\n8:16 rbytes=5 wbytes=0\n"))
	if r != 15 || w != 20 {
		t.Errorf("ioStatBytes = %d, %d", r, w)
	}
}

// testCgroup makes cgroup path under every v1 controller the reader uses
// (or the v2 hierarchy) and moves a CPU-bound shell into it. Both go with
// the test.
func testCgroup(t *testing.T, quotaMilli int64) (*Cgroup, *os.Process) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	path := fmt.Sprintf("/rung-usage-test-%d/t/r", os.Getpid())
	var dirs []string
	if cgroups.Mode() == cgroups.Unified {
		dirs = []string{filepath.Join(cgroupRoot, path)}
	} else {
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
			dirs = append(dirs, filepath.Join(cgroupRoot, c, path))
		}
	}
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		for _, d := range dirs {
			for p := d; p != filepath.Dir(filepath.Dir(filepath.Dir(d))); p = filepath.Dir(p) {
				// rmdir may race the kernel's removal of the dead task.
				for i := 0; i < 100; i++ {
					if err := os.Remove(p); err == nil || os.IsNotExist(err) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	})
	if cgroups.Mode() == cgroups.Unified {
		_ = os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+cpu +memory +pids +io"), 0)
		for _, p := range []string{filepath.Dir(filepath.Dir(path)), filepath.Dir(path)} {
			if err := os.MkdirAll(filepath.Join(cgroupRoot, p), 0o755); err != nil {
				t.Fatal(err)
			}
			_ = os.WriteFile(filepath.Join(cgroupRoot, p, "cgroup.subtree_control"), []byte("+cpu +memory +pids +io"), 0)
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCgroup(path)
	if err := c.SetCPU(quotaMilli); err != nil {
		t.Fatal(err)
	}
	return c, cmd.Process
}

// TestCgroupUsageAndThrottle reads a real cgroup's counters while a shell
// spins in it, throttles it, and waits (long deadline: a loaded machine may
// not run it for seconds) until the kernel reports throttled periods.
func TestCgroupUsageAndThrottle(t *testing.T) {
	c, _ := testCgroup(t, 1000)
	if q, err := c.CPUQuota(); err != nil || q != 1000 {
		t.Fatalf("quota = %d, %v; want 1000", q, err)
	}
	deadline := time.Now().Add(90 * time.Second)
	var u Usage
	var err error
	for {
		u, err = c.Usage()
		if err != nil {
			t.Fatal(err)
		}
		if u.CPU > 0 && u.PIDs >= 1 { // memory may be 0: charges stay where the shell started
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU or tasks counted: %+v", u)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.SetCPU(20); err != nil {
		t.Fatal(err)
	}
	if q, err := c.CPUQuota(); err != nil || q != 20 {
		t.Fatalf("quota after throttle = %d, %v; want 20", q, err)
	}
	before := u
	for {
		u, err = c.Usage()
		if err != nil {
			t.Fatal(err)
		}
		if u.Throttled > before.Throttled && u.ThrottledTime > before.ThrottledTime && u.Periods > before.Periods {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no throttling observed at 20m: before %+v, now %+v", before, u)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if u.CPU < before.CPU {
		t.Errorf("CPU went back: %v then %v", before.CPU, u.CPU)
	}
}

func TestCgroupMissing(t *testing.T) {
	if _, err := NewCgroup("/rung-no-such-cgroup/t/r").Usage(); err == nil {
		t.Fatal("usage of a missing cgroup: no error")
	}
	if err := NewCgroup("/rung-no-such-cgroup/t/r").SetCPU(100); err == nil {
		t.Fatal("throttle of a missing cgroup: no error")
	}
}
