// Package channel is the wire between the agent and rung-vm, the init of a
// vm-tier guest: length-prefixed frames over one virtio-serial port. The
// guest's kernel messages go to the serial console only; everything the
// agent needs (the workload's config, its output, its exit, the guest's
// kernel) travels here. It imports only the standard library: cmd/rung-vm
// links it into the guest.
package channel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// PortName is the virtio-serial port's name (virtserialport name=...).
const PortName = "rung.0"

// Kind is a frame's type.
type Kind byte

// Frames from the host to the guest.
const (
	// KindConfig carries the workload (Config, JSON); the guest waits for
	// it after Hello.
	KindConfig Kind = 1
	// KindSignal carries one byte: a signal for the workload.
	KindSignal Kind = 2
	// KindExec starts another process in the workload's context: an exec
	// ID (4 bytes) then its arguments (JSON array).
	KindExec Kind = 3
	// KindResume opens a channel to a guest already running its workload
	// (a restarted agent adopting it): a nonce the guest echoes in
	// KindResumed, which marks where the new stream's frames begin.
	KindResume Kind = 4
)

// Frames from the guest to the host.
const (
	// KindHello is the guest's first frame (Hello, JSON): init runs.
	KindHello Kind = 0x10
	// KindStarted says the workload's process runs (Started, JSON).
	KindStarted Kind = 0x11
	// KindStdout and KindStderr carry the workload's output as written.
	KindStdout Kind = 0x12
	KindStderr Kind = 0x13
	// KindExit is the workload's end (Exit, JSON); the guest powers off.
	KindExit Kind = 0x14
	// KindError says why the guest could not run the workload (text); the
	// guest powers off.
	KindError Kind = 0x15
	// KindExecStdout, KindExecStderr and KindExecExit carry an exec's
	// output and its exit code (JSON Exit), after its 4-byte ID.
	KindExecStdout Kind = 0x16
	KindExecStderr Kind = 0x17
	KindExecExit   Kind = 0x18
	// KindResumed echoes KindResume's nonce.
	KindResumed Kind = 0x19
)

// MaxFrame bounds a frame's payload: a hostile guest can't make the agent
// allocate more.
const MaxFrame = 1 << 20

// ErrFrame is a malformed frame.
var ErrFrame = errors.New("bad frame")

// Config is the workload the guest runs: what an OCI config.json's process
// says.
type Config struct {
	Args     []string `json:"args"`
	Env      []string `json:"env,omitempty"`
	Cwd      string   `json:"cwd,omitempty"`
	UID      uint32   `json:"uid"`
	GID      uint32   `json:"gid"`
	Groups   []uint32 `json:"groups,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	// TmpMiB sizes the tmpfs on /tmp (when the image has /tmp).
	TmpMiB int `json:"tmpMiB,omitempty"`
	// Volumes are virtio-blk disks (found by serial) the init mounts in
	// the workload's root, through IDMap.
	Volumes []Volume `json:"volumes,omitempty"`
	// IDMap is the replica's host id range: a volume stores the host's
	// ids (as the container tier writes them), the guest sees the
	// replica's own (an idmapped mount).
	IDMap *IDMap `json:"idmap,omitempty"`
	// Net configures eth0 (virtio-net on the node's tap device).
	Net *Net `json:"net,omitempty"`
}

// Volume is one volume disk.
type Volume struct {
	Serial   string `json:"serial"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// IDMap maps the guest's ids 0..Size to the host's UID.. and GID...
type IDMap struct {
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Size uint32 `json:"size"`
}

// Net is eth0's address (a /32) and its gateway, the node's end of the
// tap.
type Net struct {
	Addr    string `json:"addr"`
	Gateway string `json:"gateway"`
}

// Hello is what the guest reports when its init starts.
type Hello struct {
	// Release and Version are the guest kernel's uname -r and -v.
	Release string `json:"release"`
	Version string `json:"version"`
	// MemoryKiB is the RAM the guest kernel sees (MemTotal).
	MemoryKiB int64 `json:"memoryKiB"`
}

// Started says the workload runs, with its PID inside the guest.
type Started struct {
	Pid int `json:"pid"`
}

// Exit is how the workload ended: Code, or 128+Signal when a signal
// killed it (the out-of-memory killer's is 9).
type Exit struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
}

// Tagged prefixes p with an exec ID.
func Tagged(id uint32, p []byte) []byte {
	b := make([]byte, 4+len(p))
	binary.BigEndian.PutUint32(b, id)
	copy(b[4:], p)
	return b
}

// Untag splits an exec ID from a payload.
func Untag(p []byte) (uint32, []byte, bool) {
	if len(p) < 4 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint32(p), p[4:], true
}

// Write writes one frame.
func Write(w io.Writer, k Kind, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("%w: %d bytes", ErrFrame, len(payload))
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = byte(k)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

// WriteJSON writes one frame holding v as JSON.
func WriteJSON(w io.Writer, k Kind, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return Write(w, k, b)
}

// Read reads one frame.
func Read(r io.Reader) (Kind, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:5])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("%w: length %d over %d", ErrFrame, n, MaxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return Kind(h[0]), p, nil
}

// Resync reads r until the KindResumed frame carrying nonce and returns
// with r just past it. Whatever came before (the end of a frame the
// previous reader took half of, frames the guest wrote while no host
// listened) is skipped: a new reader can't know where those frames start.
// At most limit bytes are skipped.
func Resync(r io.Reader, nonce []byte, limit int) error {
	marker := make([]byte, 5+len(nonce))
	marker[0] = byte(KindResumed)
	binary.BigEndian.PutUint32(marker[1:5], uint32(len(nonce)))
	copy(marker[5:], nonce)
	window := make([]byte, 0, len(marker))
	var b [1]byte
	for skipped := 0; ; skipped++ {
		if skipped > limit+len(marker) {
			return fmt.Errorf("%w: no resume marker within %d bytes", ErrFrame, limit)
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return err
		}
		if len(window) == len(marker) {
			window = append(window[:0], window[1:]...)
		}
		window = append(window, b[0])
		if bytes.Equal(window, marker) {
			return nil
		}
	}
}
