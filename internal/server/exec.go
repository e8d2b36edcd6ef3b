package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// `rung exec` (DESIGN §8): a command inside one running replica, with the
// replica's own user namespace, seccomp, no_new_privs and no capabilities
// (the node's runtime.Exec does that), streamed over a WebSocket (see
// wire.ExecProtocol), for tenant admins of the replica's tenant and
// operators; every exec is audited with its command line.

// ExecFunc runs a command in a replica of this process's own node agent.
type ExecFunc func(ctx context.Context, id string, args []string, stdio runtime.ExecIO) (int, error)

// SetLocalExec lets exec reach the replicas of `rung up`'s own node agent,
// which is node (or every node without an agent of its own, for "").
func (s *Server) SetLocalExec(node string, f ExecFunc) {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	s.nodes.execNode, s.nodes.execLocal = node, f
}

// Bounds of one exec request.
const (
	maxExecArgs    = 256
	maxExecArgLen  = 4096
	maxExecMessage = 64 << 10
	// resultExecuted is the audit result of an exec that ran.
	resultExecuted = "executed"
)

var execUpgrader = websocket.Upgrader{
	Subprotocols:    []string{wire.ExecProtocol},
	ReadBufferSize:  32 << 10,
	WriteBufferSize: 32 << 10,
	// Browsers can't send a bearer token on a WebSocket, so a cross-site
	// page can't open one with the user's credentials: no origin check is
	// needed beyond authentication, which every exec passes first.
	CheckOrigin: func(*http.Request) bool { return true },
}

// execReplica handles GET /v1/tenants/{tenant}/workloads/{name}/replicas/{index}/exec
// ?command=ARG&command=ARG…[&stdin=1][&tty=1].
func (s *Server) execReplica(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, err := pathNames(r)
	if err != nil {
		return err
	}
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || index < 0 || index > v1.MaxReplicas {
		return badRequest("replica %q: want its index, a number from 0", truncate(r.PathValue("index"), 16))
	}
	obj := kindWorkload.object(tenant, name)
	if err := s.authorize(ctx, auth.Exec, obj, name); err != nil {
		return err
	}
	q := r.URL.Query()
	args := q["command"]
	if len(args) == 0 || args[0] == "" {
		return badRequest("command: missing; pass the command and its arguments as command=ARG, one each (rung exec WORKLOAD -- CMD ARGS…)")
	}
	if len(args) > maxExecArgs {
		return badRequest("command: %d arguments, at most %d", len(args), maxExecArgs)
	}
	for i, a := range args {
		if len(a) > maxExecArgLen || strings.ContainsRune(a, 0) {
			return badRequest("command[%d]: longer than %d bytes or holds a NUL byte", i, maxExecArgLen)
		}
	}
	if _, err := s.store.Get(ctx, kindWorkload.key(tenant, name)); errors.Is(err, store.ErrNotFound) {
		return notFound(v1.KindWorkload, tenant, name)
	} else if err != nil {
		return fmt.Errorf("get %s: %w", kindWorkload.key(tenant, name), err)
	}
	view, err := s.replicaView(ctx, principal(ctx))
	if err != nil {
		return err
	}
	var rp *wire.Replica
	for i := range view {
		if view[i].Workload == tenant+"/"+name && view[i].Index == index {
			rp = &view[i]
		}
	}
	switch {
	case rp == nil:
		return newError(http.StatusNotFound, wire.CodeNotFound, "replica %s/%s/%d not found (the workload has fewer replicas)", tenant, name, index)
	case rp.Node == "":
		return newError(http.StatusConflict, wire.CodeConflict, "replica %s/%s/%d is not placed: %s", tenant, name, index, rp.Reason)
	case rp.State != wire.ReplicaRunning && rp.State != wire.ReplicaStarting && rp.State != wire.ReplicaUnhealthy:
		msg := fmt.Sprintf("replica %s/%s/%d is %s, not running", tenant, name, index, rp.State)
		if rp.LastError != "" {
			msg += ": " + rp.LastError
		}
		return newError(http.StatusConflict, wire.CodeConflict, "%s", msg)
	}
	s.nodes.mu.Lock()
	execNode, local := s.nodes.execNode, s.nodes.execLocal
	s.nodes.mu.Unlock()
	if local == nil || execNode != "" && execNode != rp.Node {
		// Known gap (README): the control plane has no channel to remote
		// agents yet; exec works on replicas of rung up's own agent.
		return newError(http.StatusNotImplemented, "not_implemented",
			"replica %s/%s/%d runs on node %s, whose agent is remote: exec reaches only the replicas of the machine running rung up so far", tenant, name, index, rp.Node)
	}
	p := principal(ctx)
	e := Entry{Actor: actor(p), ActorTenant: p.Tenant, Action: "exec", Kind: v1.KindWorkload, Tenant: tenant, Name: name,
		Result: resultExecuted, RequestID: requestID(ctx),
		Message: fmt.Sprintf("replica %d on node %s: %s", index, rp.Node, truncate(strings.Join(args, " "), 2048))}
	if _, err := s.commit(ctx, e); err != nil {
		return fmt.Errorf("audit exec: %w", err)
	}

	conn, err := execUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // the upgrader answered the client
	}
	defer conn.Close()
	// The server's read and write timeouts do not apply to the stream.
	_ = conn.NetConn().SetDeadline(time.Time{})
	conn.SetReadLimit(maxExecMessage)
	s.streamExec(ctx, conn, local, rp.ID, args, q.Get("stdin") != "", q.Get("tty") != "")
	return nil
}

// streamExec runs the command and relays its streams over conn.
func (s *Server) streamExec(ctx context.Context, conn *websocket.Conn, exec ExecFunc, id string, args []string, stdin, tty bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	// Reader: stdin, and the client going away (which ends the command).
	go func() {
		defer pw.Close()
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
			}
		}
	}()
	stdio := runtime.ExecIO{Stdin: in, Stdout: chanWriter{ch: wire.ExecStdout, send: send}, Stderr: chanWriter{ch: wire.ExecStderr, send: send}, Tty: tty}
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
	for off := 0; off < len(p); off += maxExecMessage / 2 {
		end := min(off+maxExecMessage/2, len(p))
		if err := c.send(c.ch, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
