package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/etcd"
	"rung.dev/rung/internal/store/etcd/etcdtest"
	"rung.dev/rung/internal/store/storetest"
)

// open connects to endpoints under prefix and closes the store when the
// test ends.
func open(t *testing.T, endpoints []string, prefix string) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(t.Context(), etcd.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the store suite against a real etcd: one member
// for the whole suite, a fresh key prefix for every test.
func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 1)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, c.Endpoints(), fmt.Sprintf("/conformance-%d", n.Add(1)))
	})
}

// TestPrefixIsolation: two stores with different prefixes on one cluster
// never see each other's keys, even when one prefix starts the other.
func TestPrefixIsolation(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a := open(t, c.Endpoints(), "/rung")
	b := open(t, c.Endpoints(), "/rung2")
	if _, err := a.Put(t.Context(), "/tenants/acme", []byte("a"), store.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(t.Context(), "/tenants/acme", []byte("b"), store.Any); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*etcd.Store{a, b} {
		vals, _, err := s.List(t.Context(), "/")
		if err != nil || len(vals) != 1 || vals[0].Key != "/tenants/acme" {
			t.Fatalf("List = %v, %v; want just /tenants/acme", vals, err)
		}
	}
}

// TestWatchCompacted: a watch from history etcd has compacted ends with
// ErrCompacted.
func TestWatchCompacted(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c.Endpoints(), "/compact")
	r1, _ := s.Put(t.Context(), "/a", []byte("1"), store.Any)
	r2, err := s.Put(t.Context(), "/a", []byte("2"), store.Any)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Compact(t.Context(), r2); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(t.Context(), "/", r1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if !errors.Is(ev.Err, store.ErrCompacted) {
			t.Fatalf("event %+v, want ErrCompacted", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
	}
}

// TestListPages: a List longer than one etcd request is one sorted
// snapshot.
func TestListPages(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c.Endpoints(), "/pages")
	var want []string
	for i := 0; i < 2500; i += store.MaxTxnOps {
		var ops []store.Op
		for j := i; j < min(i+store.MaxTxnOps, 2500); j++ {
			k := fmt.Sprintf("/many/k%05d", j)
			want = append(want, k)
			ops = append(ops, store.PutOp(k, []byte("x"), store.Create))
		}
		if _, err := s.Txn(t.Context(), ops...); err != nil {
			t.Fatal(err)
		}
	}
	vals, _, err := s.List(t.Context(), "/many")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vals {
		got = append(got, v.Key)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List: %d keys, want %d in order", len(got), len(want))
	}
}

// TestClusterSurvivesMemberLoss: on a three-member cluster, a write
// acknowledged before the leader is kill -9'd is still there afterwards,
// and the store keeps taking writes through the remaining two.
func TestClusterSurvivesMemberLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members")
	}
	c := etcdtest.Start(t, 3)
	s := open(t, c.Endpoints(), "/ha")
	ctx := t.Context()
	r1, err := s.Put(ctx, "/tenants/acme/workloads/api", []byte("before"), store.Create)
	if err != nil {
		t.Fatal(err)
	}
	leader := -1
	for range 100 {
		if leader = c.Leader(ctx); leader >= 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Kill(leader)
	t.Logf("killed leader %s", c.Members[leader].Name)

	// Writes resume once the other two elect a leader: bounded attempts,
	// each short, so that one stuck on the dead leader does not wait for
	// etcd's own request timeout.
	var r2 int64
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		r2, err = s.Put(actx, "/tenants/acme/workloads/web", []byte("after"), store.Any)
		cancel()
		if err == nil || attempt == 60 {
			break
		}
		t.Logf("write attempt %d: %v", attempt, err)
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("write after losing the leader: %v", err)
	}
	// Read back through a survivor alone.
	var survivor string
	for i, m := range c.Members {
		if i != leader {
			survivor = m.ClientURL
			break
		}
	}
	s2 := open(t, []string{survivor}, "/ha")
	for _, want := range []store.Value{
		{Key: "/tenants/acme/workloads/api", Data: []byte("before"), Revision: r1},
		{Key: "/tenants/acme/workloads/web", Data: []byte("after"), Revision: r2},
	} {
		v, err := s2.Get(ctx, want.Key)
		if err != nil || string(v.Data) != string(want.Data) || v.Revision != want.Revision {
			t.Fatalf("Get(%q) = %q @%d, %v; want %q @%d", want.Key, v.Data, v.Revision, err, want.Data, want.Revision)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in        string
		endpoints []string
		prefix    string
		bad       bool
	}{
		{in: "etcd://127.0.0.1:2379", endpoints: []string{"http://127.0.0.1:2379"}},
		{in: "etcd://a:1,b:2,[::1]:3/rung", endpoints: []string{"http://a:1", "http://b:2", "http://[::1]:3"}, prefix: "/rung"},
		{in: "etcd://a:1/rung/prod/", endpoints: []string{"http://a:1"}, prefix: "/rung/prod"},
		{in: "http://a:1", bad: true},
		{in: "etcd://", bad: true},
		{in: "etcd://a", bad: true},
		{in: "etcd://a:1,/x", bad: true},
		{in: "etcd://a:1/../x", bad: true},
		{in: "etcd://a:1/x y", bad: true},
	} {
		cfg, err := etcd.ParseURL(tc.in)
		if tc.bad {
			if !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("ParseURL(%q) = %+v, %v; want an error", tc.in, cfg, err)
			}
			continue
		}
		if err != nil || !slices.Equal(cfg.Endpoints, tc.endpoints) || cfg.Prefix != tc.prefix {
			t.Errorf("ParseURL(%q) = %+v, %v; want %v %q", tc.in, cfg, err, tc.endpoints, tc.prefix)
		}
	}
}
