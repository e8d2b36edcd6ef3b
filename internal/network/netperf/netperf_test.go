package netperf

import (
	"net"
	"testing"
	"time"
)

func TestMeasureLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go Serve(ln)
	res, err := Measure(t.Context(), ln.Addr().String(), 20, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.RTT <= 0 || res.BitsPerSecond <= 0 {
		t.Errorf("result %+v: want a round trip and a throughput", res)
	}
}
