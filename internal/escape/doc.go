// Package escape holds rung's escape tests: integration tests that start
// hardened replicas of every tier this machine runs (runc for container,
// runsc for sandbox), built with bundle.New on a busybox rootfs shifted
// into a tenant's UID range, and try from inside to break out: write the
// rootfs, mount, read another tenant's files, see host processes, gain a
// capability, use blocked system calls, fork past the PIDs limit and
// allocate past the memory limit. Each attempt's outcome is asserted, and
// the host-side state (the neighbour still running, the cgroup counters, the
// live process's capabilities) is read with internal/verify.
//
// The tests run as root (CI does) and skip only when a runtime, busybox or
// the go tool (to build the probe) is not installed. The package has no
// code besides its tests and the probe command they put into the replicas.
package escape
