package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// boundMetrics are the gauges and counters of the HTTP bounds.
type boundMetrics struct {
	conns            prometheus.Gauge
	connsRejected    prometheus.Counter
	watchers         prometheus.Gauge
	watchersRejected prometheus.Counter
	bodyBytes        prometheus.Gauge
	bodyRejected     prometheus.Counter
	bodyTimeouts     prometheus.Counter
}

func newBoundMetrics(reg prometheus.Registerer) (*boundMetrics, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "hearsay", Subsystem: "http", Name: name, Help: help})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "hearsay", Subsystem: "http", Name: name, Help: help})
	}
	m := &boundMetrics{
		conns:            gauge("connections", "HTTP connections open (bounded by --max-http-conns)."),
		connsRejected:    counter("connections_rejected_total", "HTTP connections answered 503 and closed at once: --max-http-conns were open."),
		watchers:         gauge("watchers", "Watch streams open, keys and members (bounded by --max-watchers)."),
		watchersRejected: counter("watchers_rejected_total", "Watches answered 503: --max-watchers were open."),
		bodyBytes:        gauge("body_bytes", "Request-body bytes held (bounded by --max-http-body-memory)."),
		bodyRejected:     counter("body_rejected_total", "Writes answered 503: their body would have exceeded --max-http-body-memory."),
		bodyTimeouts:     counter("body_timeouts_total", "Requests cut off because their body did not arrive within --http-read-timeout."),
	}
	for _, c := range []prometheus.Collector{m.conns, m.connsRejected, m.watchers, m.watchersRejected, m.bodyBytes, m.bodyRejected, m.bodyTimeouts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// limitListener accepts at most cap(sem) connections open at once; beyond
// that it answers a new connection 503 and closes it, rather than leaving
// it in the kernel's backlog as golang.org/x/net/netutil.LimitListener
// does (that module is not a dependency, and a client that waits without
// an answer cannot tell an overloaded agent from a dead one).
type limitListener struct {
	net.Listener
	sem chan struct{}
	m   *boundMetrics
}

// overloaded is the answer to a connection beyond the limit.
var overloaded = func() []byte {
	body := `{"error":"too many HTTP connections open (agent --max-http-conns)"}` + "\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

func newLimitListener(ln net.Listener, n int, m *boundMetrics) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), m: m}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			l.m.conns.Inc()
			return &limitConn{Conn: c, l: l}, nil
		default:
			l.m.connsRejected.Inc()
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = c.Write(overloaded)
			_ = c.Close()
		}
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		<-c.l.sem
		c.l.m.conns.Dec()
	})
	return err
}

// bodyBudget bounds the request-body bytes held at once.
type bodyBudget struct {
	max  int64
	used atomic.Int64
	m    *boundMetrics
}

func (b *bodyBudget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			b.m.bodyBytes.Add(float64(n))
			return true
		}
	}
}

func (b *bodyBudget) release(n int64) {
	b.used.Add(-n)
	b.m.bodyBytes.Sub(float64(n))
}

// Errors of readBody.
var (
	errBodyBusy    = errors.New("too many request bodies in flight (agent --max-http-body-memory); retry")
	errBodyTimeout = errors.New("request body did not arrive in time (agent --http-read-timeout)")
)

// readBody reads r's body of at most limit bytes into a buffer charged to
// the budget: allocated at once when the length is declared, else grown
// chunk by chunk as bytes arrive. The caller calls release when done with
// the bytes. A body that is too large fails with *http.MaxBytesError.
func (a *Agent) readBody(w http.ResponseWriter, r *http.Request, limit int64) (data []byte, release func(), err error) {
	var held int64
	release = func() { a.body.release(held) }
	grow := func(n int64) bool {
		if !a.body.reserve(n) {
			a.bounds.bodyRejected.Inc()
			return false
		}
		held += n
		return true
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	fail := func(err error, got int) error {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			a.bounds.bodyTimeouts.Inc()
			return fmt.Errorf("%w: %d bytes in %v", errBodyTimeout, got, a.cfg.Bounds.HTTPReadTimeout)
		}
		return err
	}
	if n := r.ContentLength; n >= 0 {
		// net/http ends the body after the declared length.
		if !grow(n) {
			return nil, release, errBodyBusy
		}
		buf := make([]byte, n)
		if k, err := io.ReadFull(body, buf); err != nil {
			return nil, release, fail(err, k)
		}
		return buf, release, nil
	}
	const chunk = 64 << 10
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			// One byte beyond limit lets MaxBytesReader report the excess.
			more := max(min(int64(max(len(buf), chunk)), limit+1-int64(len(buf))), 1)
			if !grow(more) {
				return nil, release, errBodyBusy
			}
			nb := make([]byte, len(buf), len(buf)+int(more))
			copy(nb, buf)
			buf = nb
		}
		k, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if errors.Is(err, io.EOF) {
			return buf, release, nil
		}
		if err != nil {
			return nil, release, fail(err, len(buf))
		}
	}
}

// acquireWatcher takes a watch slot, or answers 503 and returns false.
func (a *Agent) acquireWatcher(w http.ResponseWriter) bool {
	if n := a.watchers.Add(1); n > int64(a.cfg.Bounds.MaxWatchers) {
		a.watchers.Add(-1)
		a.bounds.watchersRejected.Inc()
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many watches open: the limit is %d (agent --%s)", a.cfg.Bounds.MaxWatchers, FlagMaxWatchers))
		return false
	}
	a.bounds.watchers.Inc()
	return true
}

func (a *Agent) releaseWatcher() {
	a.watchers.Add(-1)
	a.bounds.watchers.Dec()
}
