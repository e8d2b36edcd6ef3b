package microvm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// QMPError is an error answer of QEMU to a command.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Event is an asynchronous QMP event (SHUTDOWN, POWERDOWN, STOP, ...).
type Event struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Version is QEMU's version from the QMP greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

// RunStatus is the answer to query-status.
type RunStatus struct {
	// Status is QEMU's run state: "prelaunch", "running", "paused",
	// "shutdown", "internal-error", ...
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

// QMP is a client connection to one VMM's QMP socket. Commands are
// serialized; events that arrive while waiting for an answer are kept
// (the last 64) for Events.
type QMP struct {
	conn    net.Conn
	r       *bufio.Reader
	version Version

	mu     sync.Mutex // one command at a time
	broken error      // set when a command was cut off: answers may be out of step
	evMu   sync.Mutex
	events []Event
}

// DialQMP connects to a QMP unix socket, reads the greeting and negotiates
// capabilities (qmp_capabilities), after which commands are accepted.
func DialQMP(ctx context.Context, socket string) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", socket, err)
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	stop := q.watch(ctx)
	defer stop()
	var greeting struct {
		QMP *struct {
			Version struct {
				QEMU struct {
					Major int `json:"major"`
					Minor int `json:"minor"`
					Micro int `json:"micro"`
				} `json:"qemu"`
				Package string `json:"package"`
			} `json:"version"`
			Capabilities []string `json:"capabilities"`
		} `json:"QMP"`
	}
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting from %s: %w", socket, err)
	}
	if err := json.Unmarshal(line, &greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting from %s: not a QMP greeting: %q", socket, line)
	}
	v := greeting.QMP.Version
	q.version = Version{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro, Package: v.Package}
	if err := q.execute("qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Version reports the QEMU version from the greeting.
func (q *QMP) Version() Version { return q.version }

// Execute runs one QMP command with optional arguments and decodes its
// "return" value into out (if non-nil). An error answer is a *QMPError.
func (q *QMP) Execute(ctx context.Context, command string, args, out any) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken != nil {
		return fmt.Errorf("qmp %s: connection unusable after %w", command, q.broken)
	}
	stop := q.watch(ctx)
	defer stop()
	err := q.execute(command, args, out)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// The connection deadline is the context's: report the context's
		// error, and never reuse the stream (a late answer would be taken
		// for the next command's).
		cerr := ctx.Err()
		if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		q.broken = fmt.Errorf("qmp %s: %w", command, cerr)
		q.conn.Close()
		return q.broken
	}
	return err
}

// Status runs query-status.
func (q *QMP) Status(ctx context.Context) (RunStatus, error) {
	var s RunStatus
	err := q.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Powerdown asks the guest to shut down (ACPI power button; on microvm
// with the default acpi=on, or a guest agent listening for it).
func (q *QMP) Powerdown(ctx context.Context) error {
	return q.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit stops the VMM at once. QEMU may close the connection before or
// right after answering; both count as success.
func (q *QMP) Quit(ctx context.Context) error {
	err := q.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Events returns and clears the events received so far.
func (q *QMP) Events() []Event {
	q.evMu.Lock()
	defer q.evMu.Unlock()
	ev := q.events
	q.events = nil
	return ev
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// execute writes one command and reads until its answer.
func (q *QMP) execute(command string, args, out any) error {
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, args}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	if _, err := q.conn.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("qmp %s: %w", command, err)
		}
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *QMPError       `json:"error"`
			Event  string          `json:"event"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			return fmt.Errorf("qmp %s: bad message %q: %w", command, line, err)
		}
		switch {
		case msg.Event != "":
			var ev Event
			if json.Unmarshal(line, &ev) == nil {
				q.keep(ev)
			}
		case msg.Error != nil:
			msg.Error.Command = command
			return msg.Error
		case msg.Return != nil:
			if out != nil {
				if err := json.Unmarshal(msg.Return, out); err != nil {
					return fmt.Errorf("qmp %s: decode answer: %w", command, err)
				}
			}
			return nil
		default:
			return fmt.Errorf("qmp %s: unexpected message %q", command, line)
		}
	}
}

func (q *QMP) keep(ev Event) {
	q.evMu.Lock()
	defer q.evMu.Unlock()
	q.events = append(q.events, ev)
	if len(q.events) > 64 {
		q.events = q.events[len(q.events)-64:]
	}
}

// watch applies ctx's deadline and cancellation to the connection until
// the returned stop is called.
func (q *QMP) watch(ctx context.Context) (stop func()) {
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetDeadline(dl)
	}
	cancel := context.AfterFunc(ctx, func() { _ = q.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		cancel()
		_ = q.conn.SetDeadline(time.Time{})
	}
}
