package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	v1 "rung.dev/rung/api/v1"
)

// Replica states reported per tier. Until a node agent reports, every
// placed replica is pending.
const (
	StatePending = "pending"
	StateRunning = "running"
	StateFailed  = "failed"
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
	replicas        *prometheus.GaugeVec // tier, state
	runs            prometheus.Counter
	planTime        prometheus.Histogram
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
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rung_replicas",
			Help: "Replicas by tier and state (pending until a node agent reports them running).",
		}, []string{"tier", "state"}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rung_scheduler_runs_total",
			Help: "Scheduler runs over the stored objects.",
		}),
		planTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rung_scheduler_run_duration_seconds",
			Help:    "Time to plan every stored workload.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
	}
	for _, c := range []prometheus.Collector{
		m.latency, m.denials, m.unauthenticated, m.throttled, m.admission, m.placements, m.unplaced, m.replicas, m.runs, m.planTime,
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
		for _, st := range []string{StatePending, StateRunning, StateFailed} {
			m.replicas.WithLabelValues(string(t), st)
		}
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

// setPlan publishes a plan's counts. Replicas are pending until an agent
// reports them (running and failed stay 0 until then).
func (m *metrics) setPlan(byTier map[string]int, unplaced int) {
	for _, t := range v1.Tiers {
		n := float64(byTier[string(t)])
		m.placements.WithLabelValues(string(t)).Set(n)
		m.replicas.WithLabelValues(string(t), StatePending).Set(n)
	}
	m.unplaced.Set(float64(unplaced))
}
