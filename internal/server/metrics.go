package server

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
)

// metrics are the server's Prometheus collectors, on its own registry.
type metrics struct {
	latency *prometheus.HistogramVec // route, method, code
	denials *prometheus.CounterVec   // access denials by code
	// unauthenticated counts requests without a valid token by reason
	// (missing, invalid); throttled those answered 429 by scope
	// (address, token).
	unauthenticated *prometheus.CounterVec
	throttled       *prometheus.CounterVec
	admission       *prometheus.CounterVec // admission denials by kind and code
	placements      *prometheus.GaugeVec   // placed replicas by tier
	unplaced        prometheus.Gauge
	runs            prometheus.Counter
	planTime        prometheus.Histogram
	// noisySteps counts the noisy-neighbour ladder's steps by action.
	noisySteps *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rung_api_request_duration_seconds",
			Help:    "Latency of API requests by route, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method", "code"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rung_api_access_denials_total",
			Help: "Requests refused by authentication or access control, by answer code.",
		}, []string{"code"}),
		unauthenticated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rung_api_unauthenticated_total",
			Help: "Requests without a valid bearer token, by reason (missing, invalid).",
		}, []string{"reason"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rung_api_throttled_total",
			Help: "Requests answered 429 by rate limits, by scope (address: too many failed authentications; token).",
		}, []string{"scope"}),
		admission: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rung_admission_denials_total",
			Help: "Applies refused at admission (invalid, quota_exceeded, forbidden content, conflict), by kind and code.",
		}, []string{"kind", "code"}),
		placements: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rung_placements",
			Help: "Replicas placed by the current plan, by tier.",
		}, []string{"tier"}),
		unplaced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rung_unplaced_replicas",
			Help: "Replicas the current plan could not place.",
		}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rung_scheduler_runs_total",
			Help: "Scheduler runs over the stored objects.",
		}),
		planTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rung_scheduler_run_duration_seconds",
			Help:    "Time to plan every stored workload.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		noisySteps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rung_noisy_steps_total",
			Help: "Noisy-neighbour ladder steps nodes took (throttle, report, move, release).",
		}, []string{"action"}),
	}
	for _, a := range noisyActions {
		m.noisySteps.WithLabelValues(a)
	}
	for _, c := range []prometheus.Collector{
		m.noisySteps, m.latency, m.denials, m.unauthenticated, m.throttled, m.admission, m.placements, m.unplaced, m.runs, m.planTime,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"missing", "invalid"} {
		m.unauthenticated.WithLabelValues(r)
	}
	for _, sc := range []string{"address", "token"} {
		m.throttled.WithLabelValues(sc)
	}
	for _, t := range v1.Tiers {
		m.placements.WithLabelValues(string(t))
	}
	return m, nil
}

func (m *metrics) observe(route, method string, code int, d time.Duration) {
	if code == 0 {
		code = 200
	}
	switch method { // bounded label values, whatever clients send
	case "GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS":
	default:
		method = "other"
	}
	m.latency.WithLabelValues(route, method, strconv.Itoa(code)).Observe(d.Seconds())
}

// setPlan publishes a plan's counts.
func (m *metrics) setPlan(byTier map[string]int, unplaced int) {
	for _, t := range v1.Tiers {
		m.placements.WithLabelValues(string(t)).Set(float64(byTier[string(t)]))
	}
	m.unplaced.Set(float64(unplaced))
}

// replicaCollector publishes the replica view at every scrape (DESIGN §8),
// so /metrics agrees with `rung get replicas`: rung_replicas by tier and
// state, and per replica its state, readiness and restarts. Per-replica
// series carry tenant, workload (its name), replica (its index) and state
// labels: one series per replica and metric, bounded by the tenants'
// replica quotas; a deleted replica's series disappear with it.
type replicaCollector struct{ s *Server }

var (
	descReplicas = prometheus.NewDesc("rung_replicas",
		"Placed replicas by tier and state (pending until their node reports them).", []string{"tier", "state"}, nil)
	descReplicaState = prometheus.NewDesc("rung_replica_state",
		"1 for the state each replica is in (pending, admitted, starting, running, unhealthy, restarting, failed, succeeded, terminating).",
		[]string{"tenant", "workload", "replica", "state"}, nil)
	descReplicaReady = prometheus.NewDesc("rung_replica_ready",
		"1 when the replica runs and its health check passes (or it has none).", []string{"tenant", "workload", "replica"}, nil)
	descReplicaRestarts = prometheus.NewDesc("rung_replica_restarts_total",
		"Restarts of each replica as its node counted them.", []string{"tenant", "workload", "replica"}, nil)
	// Tenant networks (DESIGN §9): what each replica sent and received on
	// its link, as its node last reported.
	descReplicaNetBytes = prometheus.NewDesc("rung_replica_network_bytes_total",
		"Bytes each replica received (direction=rx) and sent (tx) on its tenant network.", []string{"tenant", "workload", "replica", "direction"}, nil)
	descReplicaNetPackets = prometheus.NewDesc("rung_replica_network_packets_total",
		"Packets each replica received (direction=rx) and sent (tx) on its tenant network.", []string{"tenant", "workload", "replica", "direction"}, nil)
)

func (c replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReplicas
	ch <- descReplicaState
	ch <- descReplicaReady
	ch <- descReplicaRestarts
	describeUsage(ch)
	ch <- descReplicaNetBytes
	ch <- descReplicaNetPackets
}

func (c replicaCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	view, err := c.s.replicaView(ctx, auth.Principal{Role: auth.Operator})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descReplicas, err)
		return
	}
	counts := map[[2]string]int{}
	for _, t := range v1.Tiers {
		for _, st := range wire.ReplicaStates {
			counts[[2]string{string(t), st}] = 0
		}
	}
	for _, r := range view {
		_, name, _ := strings.Cut(r.Workload, "/")
		idx := strconv.Itoa(r.Index)
		if r.Tier != "" {
			counts[[2]string{r.Tier, r.State}]++
		}
		ch <- prometheus.MustNewConstMetric(descReplicaState, prometheus.GaugeValue, 1, r.Tenant, name, idx, r.State)
		ready := 0.0
		if r.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(descReplicaReady, prometheus.GaugeValue, ready, r.Tenant, name, idx)
		ch <- prometheus.MustNewConstMetric(descReplicaRestarts, prometheus.CounterValue, float64(r.Restarts), r.Tenant, name, idx)
		collectUsage(ch, r, name, idx)
		if n := r.Network; n != nil {
			ch <- prometheus.MustNewConstMetric(descReplicaNetBytes, prometheus.CounterValue, float64(n.RxBytes), r.Tenant, name, idx, "rx")
			ch <- prometheus.MustNewConstMetric(descReplicaNetBytes, prometheus.CounterValue, float64(n.TxBytes), r.Tenant, name, idx, "tx")
			ch <- prometheus.MustNewConstMetric(descReplicaNetPackets, prometheus.CounterValue, float64(n.RxPackets), r.Tenant, name, idx, "rx")
			ch <- prometheus.MustNewConstMetric(descReplicaNetPackets, prometheus.CounterValue, float64(n.TxPackets), r.Tenant, name, idx, "tx")
		}
	}
	c.collectNodePressure(ch)
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descReplicas, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
