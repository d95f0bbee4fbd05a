package agent

import (
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newBuildInfo is hearsay_build_info{version,go}, always 1: the
// Prometheus way to export what a process runs.
func newBuildInfo(version string) prometheus.Collector {
	if version == "" {
		version = "unknown"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   "hearsay",
		Name:        "build_info",
		Help:        "Always 1; the labels say which hearsay version and Go version this agent runs.",
		ConstLabels: prometheus.Labels{"version": version, "go": runtime.Version()},
	})
	g.Set(1)
	return g
}

// httpMetrics counts and times HTTP requests by route pattern and status.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge

	// The children of the vectors, looked up once per label set: hashing
	// the labels on every request cost a few per cent of a small GET. The
	// label sets are bounded (routes are patterns, methods are the
	// standard ones or "other", codes are what handlers answer).
	mu       sync.RWMutex
	counters map[requestLabels]prometheus.Counter
	timers   map[requestLabels]prometheus.Observer
}

type requestLabels struct {
	route, method string
	code          int
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		counters: map[requestLabels]prometheus.Counter{},
		timers:   map[requestLabels]prometheus.Observer{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hearsay",
			Subsystem: "http",
			Name:      "requests_total",
			Help:      "HTTP API requests served, by route (the path pattern), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hearsay",
			Subsystem: "http",
			Name:      "request_duration_seconds",
			Help:      "HTTP API request latency, by route (the path pattern) and method (watches last as long as the stream).",
			Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 60, 600},
		}, []string{"route", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "hearsay",
			Subsystem: "http",
			Name:      "requests_in_flight",
			Help:      "HTTP API requests being served, watches included.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *httpMetrics) observe(route, method string, code int, d time.Duration) {
	method = methodLabel(method)
	c, t := m.children(route, method, code)
	c.Inc()
	t.Observe(d.Seconds())
}

// children returns the counter of (route, method, code) and the timer of
// (route, method), creating them at first use.
func (m *httpMetrics) children(route, method string, code int) (prometheus.Counter, prometheus.Observer) {
	kc, kt := requestLabels{route, method, code}, requestLabels{route, method, 0}
	m.mu.RLock()
	c, okc := m.counters[kc]
	t, okt := m.timers[kt]
	m.mu.RUnlock()
	if okc && okt {
		return c, t
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, okc = m.counters[kc]; !okc {
		c = m.requests.WithLabelValues(route, method, strconv.Itoa(code))
		m.counters[kc] = c
	}
	if t, okt = m.timers[kt]; !okt {
		t = m.duration.WithLabelValues(route, method)
		m.timers[kt] = t
	}
	return c, t
}

// methodLabel is the method label of a request: a client may send any
// token as its method, and each would otherwise make new time series.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// statusWriter records the status code written through it. It unwraps for
// http.ResponseController, so flushing works through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets code that type-asserts http.Flusher flush through the wrapper.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
