// Package execstream carries one `rung exec` over a WebSocket
// (wire.ExecProtocol): each binary message starts with a channel byte, as
// Kubernetes' v5.channel.k8s.io. Serve runs the command on the side that
// can (the node, or rung up's own agent), Run is the client's side, and
// Relay joins two streams (the control plane between a client and a
// remote agent's tunnel).
package execstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
)

// MaxMessage bounds one message of the stream.
const MaxMessage = 64 << 10

// Func runs args in replica id with stdio (runtime.Exec's shape).
type Func func(ctx context.Context, id string, args []string, stdio runtime.ExecIO) (int, error)

// Upgrader accepts exec streams. Browsers can't send a bearer token on a
// WebSocket, so a cross-site page can't open one with a user's
// credentials: authentication, which every exec passes first, is the
// origin check.
var Upgrader = websocket.Upgrader{
	Subprotocols:    []string{wire.ExecProtocol},
	ReadBufferSize:  32 << 10,
	WriteBufferSize: 32 << 10,
	CheckOrigin:     func(_ *http.Request) bool { return true },
}

// Serve runs the command and relays its streams over conn until it ends,
// then sends its wire.ExecResult and closes. The client going away ends
// the command.
//
// q is the request's query: stdin=1 passes standard input, tty=1 runs on
// a terminal of width×height characters (width, height) when given.
func Serve(ctx context.Context, conn *websocket.Conn, exec Func, id string, args []string, q url.Values) {
	stdin, tty := q.Get("stdin") != "", q.Get("tty") != ""
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn.SetReadLimit(MaxMessage)
	var wmu sync.Mutex
	send := func(ch byte, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		return conn.WriteMessage(websocket.BinaryMessage, append([]byte{ch}, b...))
	}
	var in io.Reader
	pr, pw := io.Pipe()
	if stdin {
		in = pr
	}
	resize := make(chan runtime.TermSize, 4)
	w, werr := strconv.ParseUint(q.Get("width"), 10, 16)
	h, herr := strconv.ParseUint(q.Get("height"), 10, 16)
	if werr == nil && herr == nil {
		resize <- runtime.TermSize{Rows: uint16(h), Cols: uint16(w)} // the size it starts with
	}
	go func() {
		defer pw.Close()
		defer close(resize)
		for {
			typ, msg, err := conn.ReadMessage()
			if err != nil {
				cancel()
				return
			}
			if typ != websocket.BinaryMessage || len(msg) == 0 {
				continue
			}
			switch msg[0] {
			case wire.ExecStdin:
				if _, err := pw.Write(msg[1:]); err != nil {
					return
				}
			case wire.ExecClose:
				pw.Close()
			case wire.ExecResize:
				var sz wire.TermSize
				if json.Unmarshal(msg[1:], &sz) == nil {
					select {
					case resize <- runtime.TermSize{Rows: sz.Height, Cols: sz.Width}:
					default: // a newer size follows
					}
				}
			}
		}
	}()
	stdio := runtime.ExecIO{Stdin: in, Stdout: chanWriter{ch: wire.ExecStdout, send: send}, Stderr: chanWriter{ch: wire.ExecStderr, send: send}, Tty: tty, Resize: resize}
	code, err := exec(ctx, id, args, stdio)
	res := wire.ExecResult{ExitCode: code}
	if err != nil {
		res.Error = err.Error()
	}
	b, _ := json.Marshal(res)
	_ = send(wire.ExecStatus, b)
	wmu.Lock()
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	wmu.Unlock()
}

// chanWriter sends what is written as messages of one channel.
type chanWriter struct {
	ch   byte
	send func(byte, []byte) error
}

func (c chanWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += MaxMessage / 2 {
		end := min(off+MaxMessage/2, len(p))
		if err := c.send(c.ch, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// IO connects a remote command to local streams; nil means none.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Resize carries the local terminal's sizes (a -t command's).
	Resize <-chan wire.TermSize
}

// Run is the client's side: it sends stdin, writes the command's output
// and returns its exit code, with the error the far side gave when the
// command could not run.
func Run(ctx context.Context, conn *websocket.Conn, stdio IO) (int, error) {
	var wmu sync.Mutex
	if stdio.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdio.Stdin.Read(buf)
				if n > 0 {
					wmu.Lock()
					werr := conn.WriteMessage(websocket.BinaryMessage, append([]byte{wire.ExecStdin}, buf[:n]...))
					wmu.Unlock()
					if werr != nil {
						return
					}
				}
				if err != nil {
					wmu.Lock()
					_ = conn.WriteMessage(websocket.BinaryMessage, []byte{wire.ExecClose, wire.ExecStdin})
					wmu.Unlock()
					return
				}
			}
		}()
	}
	if stdio.Resize != nil {
		go func() {
			for sz := range stdio.Resize {
				b, _ := json.Marshal(sz)
				wmu.Lock()
				err := conn.WriteMessage(websocket.BinaryMessage, append([]byte{wire.ExecResize}, b...))
				wmu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // unblocks the read below
	defer stop()
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("the stream ended without an exit code: %w", err)
		}
		if typ != websocket.BinaryMessage || len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case wire.ExecStdout:
			if stdio.Stdout != nil {
				_, _ = stdio.Stdout.Write(msg[1:])
			}
		case wire.ExecStderr:
			if stdio.Stderr != nil {
				_, _ = stdio.Stderr.Write(msg[1:])
			}
		case wire.ExecStatus:
			var res wire.ExecResult
			if err := json.Unmarshal(msg[1:], &res); err != nil {
				return -1, fmt.Errorf("status: %w", err)
			}
			if res.Error != "" {
				return res.ExitCode, errors.New(res.Error)
			}
			return res.ExitCode, nil
		}
	}
}

// Relay copies messages both ways between a and b until either side
// ends, then closes both.
func Relay(a, b *websocket.Conn) {
	a.SetReadLimit(MaxMessage)
	b.SetReadLimit(MaxMessage)
	done := make(chan struct{}, 2)
	pipe := func(from, to *websocket.Conn) {
		defer func() { done <- struct{}{} }()
		for {
			typ, msg, err := from.ReadMessage()
			if err != nil {
				if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
					_ = to.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text), time.Now().Add(5*time.Second))
				}
				return
			}
			if err := to.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}
	go pipe(a, b)
	go pipe(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
