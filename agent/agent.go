// Package agent is the hearsay daemon: it runs one hearsay.Node and serves
// it over an HTTP JSON API, with Server-Sent Events for watches and
// Prometheus metrics.
//
// Routes:
//
//	GET    /v1/kv/{key...}   read a key (JSON, or raw bytes with Accept: application/octet-stream)
//	PUT    /v1/kv/{key...}   write a key (raw body, or JSON {"value": base64})
//	DELETE /v1/kv/{key...}   delete a key
//	GET    /v1/kv            scan: ?prefix=&start=&cursor=&limit=
//	GET    /v1/watch         Server-Sent Events of changes: ?prefix=
//	GET    /v1/members       the membership view
//	GET    /v1/status        this node's status
//	GET    /v1/health/live   200 while the agent serves (liveness probe)
//	GET    /v1/health/ready  200 when joined, caught up and writable, else 503 with the reasons
//	GET    /metrics          Prometheus metrics
//
// With a certs directory (Config.CertsDir, see package internal/certs and
// hearsay cert) the API is served over TLS 1.3 and every route but the two
// health probes needs a client certificate signed by the cluster CA whose
// role allows it: read for GET routes and /metrics, write for PUT and
// DELETE, admin for everything. A request without a valid certificate gets
// 401, one whose role is too low 403.
//
// Errors are JSON objects {"error": "..."} with a fitting status code.
// Keys are bytes: in paths and queries percent-encoded (any byte), in JSON
// base64 ("key", and the scan cursor "next"), with "key_text" when the key
// is valid UTF-8 (see EncodeKey). Every response carries the Server header
// "hearsay/VERSION", so that clients know they talk to an agent.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/certs"
)

// Agent runs a hearsay Node and its HTTP API. Create it with New, then call
// Run, or serve Handler yourself and call Close.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	node     *hearsay.Node
	registry *prometheus.Registry
	metrics  *httpMetrics
	bounds   *boundMetrics
	auth     *authMetrics
	body     *bodyBudget
	watchers atomic.Int64
	handler  http.Handler
	kv       kvHandlers
	// serverHeader is the Server header of every response.
	serverHeader string
	ln           net.Listener // nil when cfg.HTTP is empty
	// identity and tls are set when cfg.CertsDir is: the node's
	// certificates and the HTTP server's TLS configuration.
	identity certs.Node
	tls      *tls.Config

	// stopping is closed when a graceful stop begins, so that long-lived
	// responses (watches) end and the HTTP server can drain.
	stopping  chan struct{}
	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, opens the node (binding the gossip address and
// starting to join cfg.Join) and binds the HTTP address. Serving starts with
// Run. On error nothing is left open.
func New(cfg Config) (*Agent, error) {
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.CheckStorage(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := cfg.CheckExposure(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	log, err := cfg.NewLogger(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Insecure {
		log.Warn("INSECURE: --insecure given; this agent accepts unauthenticated peers and clients where it is exposed", cfg.insecureWarning()...)
	}
	warnKeyFileMode(log, cfg.SecretKeyFile)
	key, err := cfg.ReadSecretKey()
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("agent: register Go metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("agent: register process metrics: %w", err)
	}
	if err := reg.Register(newBuildInfo(cfg.BuildVersion)); err != nil {
		return nil, fmt.Errorf("agent: register build info: %w", err)
	}
	m, err := newHTTPMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("agent: register HTTP metrics: %w", err)
	}
	bm, err := newBoundMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("agent: register bound metrics: %w", err)
	}
	am, err := newAuthMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("agent: register auth metrics: %w", err)
	}
	a := &Agent{
		log:      log,
		registry: reg,
		metrics:  m,
		bounds:   bm,
		auth:     am,
		body:     &bodyBudget{max: int64(cfg.Bounds.MaxHTTPBodyMemory), m: bm},
		stopping: make(chan struct{}),
	}
	if cfg.CertsDir != "" {
		if err := a.loadIdentity(&cfg); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	a.cfg = cfg
	a.serverHeader = ServerHeader
	if cfg.BuildVersion != "" {
		a.serverHeader += "/" + cfg.BuildVersion
	}

	ncfg := hearsay.DefaultConfig()
	ncfg.Name = cfg.Name
	ncfg.Protocol.Cluster = cfg.Cluster
	ncfg.DataDir = cfg.DataDir
	ncfg.BindAddr = cfg.Bind
	ncfg.AdvertiseAddr = cfg.Advertise
	ncfg.Seeds = append([]string(nil), cfg.Join...)
	ncfg.Protocol.MaxValueSize = cfg.MaxValueSize
	applyProtocol(&ncfg.Protocol, cfg)
	applyBounds(&ncfg, cfg)
	applyQuarantine(&ncfg, cfg)
	ncfg.NoSync = cfg.NoSync
	ncfg.MinFreeDisk = cfg.MinFreeDisk
	ncfg.SlowSync = cfg.SlowSync
	if cfg.SlowSync == 0 {
		ncfg.SlowSync = -1 // the flag's 0 turns the report off
	}
	ncfg.SecretKey = key
	if cfg.CertsDir != "" {
		// A certificate cluster: records are signed with node.key and
		// verified against the certificates ca.crt signed.
		ncfg.Identity = &hearsay.Identity{CA: a.identity.CA, Cert: a.identity.Cert, Key: a.identity.Key}
	}
	ncfg.Logger = log
	ncfg.Registerer = reg

	node, err := hearsay.Open(ncfg)
	if err != nil {
		where := "in memory"
		if cfg.DataDir != "" {
			where = fmt.Sprintf("data dir %q", cfg.DataDir)
		}
		return nil, fmt.Errorf("agent: open node %q (gossip %s, %s): %w", cfg.Name, cfg.Bind, where, err)
	}
	a.node = node
	a.kv = kvHandlers{get: http.HandlerFunc(a.handleGet), put: http.HandlerFunc(a.handlePut), del: http.HandlerFunc(a.handleDelete)}
	a.handler = a.routes()
	a.recordIdentity()
	if cfg.HTTP != "" {
		ln, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			_ = node.Close()
			return nil, fmt.Errorf("agent: HTTP API (--%s): %w", FlagHTTP, err) // net's error names the address
		}
		a.ln = newLimitListener(ln, cfg.Bounds.MaxHTTPConns, bm)
	}
	return a, nil
}

// Node returns the agent's node, for embedding programs and tests.
func (a *Agent) Node() *hearsay.Node { return a.node }

// Handler returns the HTTP API, for tests (httptest) or a server of your own.
func (a *Agent) Handler() http.Handler { return a.handler }

// HTTPAddr returns the address the HTTP API listens on (with the actual
// port when Config.HTTP asked for port 0), or "" without a listener.
func (a *Agent) HTTPAddr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Run serves the HTTP API until ctx is done, then stops gracefully: it
// announces a leave to the cluster (bounded by Config.ShutdownTimeout), shuts
// the HTTP server down (letting requests in flight finish, ending watches)
// and closes the node. It returns nil after a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	st := a.node.Status()
	where := []any{"storage", a.storage()}
	if a.cfg.DataDir != "" {
		where = append(where, "data_dir", a.cfg.DataDir)
	}
	a.log.Info("agent started", append(append([]any{
		"name", a.cfg.Name, "gossip", st.Address, "http", a.HTTPAddr()}, where...),
		"cluster", a.cfg.Cluster, "join", a.cfg.Join,
		"tls", a.tls != nil, "version", a.cfg.BuildVersion)...)
	if a.cfg.DataDir == "" {
		a.log.Warn("--in-memory: the replica is kept in memory only; a restart loses it")
	}

	var srv *http.Server
	serveErr := make(chan error, 1)
	if a.ln != nil {
		srv = &http.Server{
			Handler:           a.handler,
			ReadHeaderTimeout: min(maxReadHeaderTimeout, a.cfg.Bounds.HTTPReadTimeout),
			MaxHeaderBytes:    MaxHeaderBytes,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
			TLSConfig:         a.TLSConfig(),
		}
		go func() {
			if srv.TLSConfig != nil {
				serveErr <- srv.ServeTLS(a.ln, "", "")
				return
			}
			serveErr <- srv.Serve(a.ln)
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("stopping: leaving the cluster")
	case err := <-serveErr:
		runErr = fmt.Errorf("agent: HTTP server on %s: %w", a.HTTPAddr(), err)
		a.log.Error("HTTP server failed; stopping", "err", err)
		srv = nil
	}

	leaveCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	if err := a.node.Leave(leaveCtx); err != nil {
		a.log.Warn("leave did not complete", "err", err)
	}
	cancel()

	a.stopOnce.Do(func() { close(a.stopping) })
	if srv != nil {
		shutCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		if err := srv.Shutdown(shutCtx); err != nil {
			a.log.Warn("HTTP shutdown did not complete; closing connections", "err", err)
			_ = srv.Close()
		}
		cancel()
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
			runErr = fmt.Errorf("agent: HTTP server on %s: %w", a.HTTPAddr(), err)
		}
	}
	if err := a.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		a.log.Info("agent stopped")
	}
	return runErr
}

// Close ends watches, closes the HTTP listener if Run did not start serving
// it, and closes the node without announcing a leave. Run calls it; call it
// yourself only when you do not call Run. It is safe to call more than once.
func (a *Agent) Close() error {
	a.stopOnce.Do(func() { close(a.stopping) })
	a.closeOnce.Do(func() {
		if a.ln != nil {
			_ = a.ln.Close() // already closed by Shutdown after Run
		}
		if err := a.node.Close(); err != nil && !errors.Is(err, hearsay.ErrClosed) {
			a.closeErr = fmt.Errorf("agent: close node: %w", err)
		}
	})
	return a.closeErr
}

// applyProtocol carries the protocol-tuning flags into the engine's
// configuration: the profile first, then the flags that override it. cfg
// has been validated.
func applyProtocol(pc *engine.Config, cfg Config) {
	if m, err := membership.Profile(cfg.Profile); err == nil {
		pc.Membership = m
	}
	pc.DirectMail = cfg.DirectMail
	pc.DirectMailWindow = cfg.DirectMailWindow
	pc.RumorMongering = cfg.Rumor
	pc.Plumtree = cfg.Plumtree
	pc.Tree.EagerWindow = cfg.PlumtreeEagerWindow
	pc.Tree.IHaveWindow = cfg.PlumtreeIHaveWindow
	pc.AntiEntropy = cfg.AntiEntropy
	pc.Rumor.Interval = cfg.GossipInterval
	pc.Rumor.Fanout = cfg.Fanout
	pc.AE.Interval = cfg.AntiEntropyInterval
	pc.AE.FullExchange = cfg.AntiEntropyMode == "full"
	if m, err := antientropy.ParseMode(cfg.AntiEntropyMode); err == nil {
		pc.AE.Mode = m
	} else {
		pc.AE.Mode = antientropy.PushPull
	}
	if cfg.SuspicionTimeout > 0 {
		pc.Membership.SuspicionTimeout = cfg.SuspicionTimeout
	}
	pc.AE.TombstoneGrace = cfg.TombstoneGrace
	pc.MaxClockOffset = cfg.MaxClockOffset
	if cfg.MaxClockOffset > 0 {
		// Receivers allow twice the bound: two healthy writers may each be
		// that far from the median, on either side.
		pc.MaxClockSkew = 2 * cfg.MaxClockOffset
	}
	if cfg.RetryJoinMax > 0 {
		pc.Membership.JoinRetryMax = cfg.RetryJoinMax
		pc.Membership.JoinRetryMin = min(pc.Membership.JoinRetryMin, cfg.RetryJoinMax)
	}
}
