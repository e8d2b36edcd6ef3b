// Package netperf measures TCP round trips and throughput between two
// endpoints, as iperf3 would, with a server and a client small enough to
// run inside replicas (the rung binary itself: `rung bench netpeer`).
package netperf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// Result is one client's measurement.
type Result struct {
	// RTT is the median round trip of one byte over an open connection.
	RTT time.Duration `json:"rttNs"`
	// BitsPerSecond is the throughput of one stream.
	BitsPerSecond float64 `json:"bitsPerSecond"`
}

// Serve answers clients on ln until it is closed: 'r' connections echo
// bytes back, 's' connections are drained and answered with the byte
// count.
func Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			mode := make([]byte, 1)
			if _, err := io.ReadFull(c, mode); err != nil {
				return
			}
			switch mode[0] {
			case 'r':
				_, _ = io.Copy(c, c)
			case 's':
				// 128 KiB reads, as iperf3's: io.Discard's 8 KiB reads
				// would measure syscalls more than the path.
				n, _ := drain(c, make([]byte, 128<<10))
				_ = binary.Write(c, binary.BigEndian, n)
			}
		}()
	}
}

// drain reads r to its end into buf, returning the bytes read.
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Measure runs rounds round trips, then streams for d, against addr.
func Measure(ctx context.Context, addr string, rounds int, d time.Duration) (Result, error) {
	var res Result
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, err
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if _, err := c.Write([]byte{'r'}); err != nil {
		return res, err
	}
	b := []byte{0}
	times := make([]time.Duration, 0, rounds)
	for range rounds {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			return res, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return res, err
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	res.RTT = times[len(times)/2]

	s, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, err
	}
	defer s.Close()
	if _, err := s.Write([]byte{'s'}); err != nil {
		return res, err
	}
	buf := make([]byte, 128<<10)
	var sent int64
	start := time.Now()
	for time.Since(start) < d {
		n, err := s.Write(buf)
		sent += int64(n)
		if err != nil {
			return res, err
		}
	}
	if err := s.(*net.TCPConn).CloseWrite(); err != nil {
		return res, err
	}
	var got int64
	if err := binary.Read(s, binary.BigEndian, &got); err != nil {
		return res, fmt.Errorf("stream: %w", err)
	}
	elapsed := time.Since(start)
	if got != sent {
		return res, fmt.Errorf("stream: sent %d bytes, the server got %d", sent, got)
	}
	res.BitsPerSecond = float64(got*8) / elapsed.Seconds()
	return res, nil
}
