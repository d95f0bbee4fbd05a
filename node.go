package hearsay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/driver"
	"github.com/hearsaydb/hearsay/internal/transport"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
	"github.com/hearsaydb/hearsay/store/pebblestore"
)

// Config configures a Node. Start from DefaultConfig and change what you need.
type Config struct {
	// Name is the member name, unique in the cluster. Required.
	Name string
	// DataDir is where the replica and the outboxes are kept. Empty means an
	// in-memory store that a restart loses (tests, experiments).
	DataDir string
	// BindAddr is the gossip address to listen on, UDP and TCP, host:port.
	// Port 0 picks a free port.
	BindAddr string
	// AdvertiseAddr is the gossip address other nodes use to reach this one,
	// when it differs from BindAddr (NAT, containers). Empty means BindAddr
	// (with an unspecified host replaced by a local address).
	AdvertiseAddr string
	// Seeds are gossip addresses of members to join at start, host:port.
	// A host that is a DNS name stands for every address it resolves to (a
	// Kubernetes headless service), and is resolved again until the node
	// has joined. Joining is retried with backoff until one answers.
	Seeds []string
	// NoSync turns off fsync before a write is acknowledged. Faster, and a
	// power loss may lose acknowledged writes. Default false: durable.
	NoSync bool
	// MinFreeDisk is the free space, in bytes, below which the node
	// refuses writes (ErrNoSpace) until space is freed, so that the disk
	// never fills up under the store. 0 means DefaultMinFreeDisk of the
	// data directory's volume (the larger of 256 MiB and 2%); negative
	// turns the check off (a write that meets a full disk is still
	// refused). Ignored without a DataDir.
	MinFreeDisk int64
	// SlowSync is the sync latency above which the node reports its disk
	// as slow: /v1/status slow_sync, a readiness reason and a warning at
	// most once a minute, while the p99 of its syncs over the last minute,
	// or the sync in progress, takes longer. 0 means DefaultSlowSync (1 s);
	// negative turns the report off. Ignored without a DataDir.
	SlowSync time.Duration
	// SecretKey, when set (16, 24 or 32 bytes), encrypts and authenticates
	// all gossip with AES-GCM; nodes without the key cannot take part. A
	// keyring file in DataDir (KeyringFile, written by the key operations
	// InstallKey, UseKey and RemoveKey) takes precedence over it.
	SecretKey []byte
	// MaxRevocations bounds the revoked node names kept (with Identity),
	// and the revoked client names apart. 0 means
	// certs.DefaultMaxRevocations (4096).
	MaxRevocations int
	// MaxGossipConns and MaxGossipConnsPerIP cap the gossip TCP
	// connections accepted at once, in all and from one source IP; 0 means
	// the transport's defaults (512 and 32), negative no cap.
	MaxGossipConns      int
	MaxGossipConnsPerIP int
	// Identity, when set, makes this node a member of a certificate
	// cluster: its records are signed and every record it receives must be
	// signed by its origin (see Identity); every gossip frame is
	// authenticated by its node certificate, and frames not authenticated
	// by a valid, unrevoked node certificate of the same CA naming their
	// sender are refused (with SecretKey too, frames are also encrypted).
	// Name must be the certificate's name, or empty to take it from the
	// certificate. Nil: an unsigned cluster. LoadIdentity reads a certs
	// directory.
	Identity *Identity
	// Protocol tunes the replication protocol: cluster name, value size
	// limit, the mechanisms and their timers. Name, NodeID and Addr are set
	// by Open.
	Protocol engine.Config
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the node's Prometheus metrics.
	Registerer prometheus.Registerer
	// ChangeLog bounds the log of recent changes that watches resume from
	// (Since); zero means store.DefaultChangeLogEntries (100,000) and
	// store.DefaultChangeLogBytes (64 MiB), the oldest changes trimmed
	// first. A watch resuming from before it gets a snapshot instead. It
	// is kept in the data directory (in memory without one).
	ChangeLog store.ChangeLogLimits
}

// DefaultConfig returns a Config with the defaults for a LAN cluster.
func DefaultConfig() Config {
	return Config{
		BindAddr: "0.0.0.0:7946",
		Protocol: engine.DefaultConfig(),
	}
}

// Node is one hearsay replica: it stores a full copy of the data, serves
// reads and writes locally and gossips with its peers. Its methods are safe
// for concurrent use.
//
// One goroutine, the event loop, owns the protocol engine. It feeds the
// engine local requests, received messages and timer ticks; after each batch
// it makes the store durable with a single fsync (group commit), and only
// then acknowledges writes and sends messages.
type Node struct {
	cfg Config
	log *slog.Logger
	// st is the store the engine and the loop write through: raw, guarded
	// against writes the node cannot keep (disk.go).
	st      store.Store
	raw     store.Store
	tr      *transport.Transport
	certs   *nodeCerts     // nil without Config.Identity
	eng     *engine.Engine // owned by the loop
	core    *driver.Core   // the loop's batching and commit (internal/driver)
	nodeID  uint64
	started time.Time
	metrics *metrics

	reqs    chan request
	closing chan struct{}
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool

	view  atomic.Pointer[snapshot] // published by the loop after each batch
	ready atomic.Bool
	// membersAt is when the loop last rebuilt the member list it publishes
	// (loop-owned).
	membersAt time.Time
	// clockBad and clockLoggedAt: writes are refused for the clock, and
	// when that was last logged (loop-owned).
	clockBad      bool
	clockLoggedAt time.Time

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}
	// durableRev is the store's revision as of the last successful sync:
	// no watcher is told of a revision above it (watch.go).
	durableRev atomic.Uint64
	watchStats watchStats

	memberFeed memberFeed // subscribers of MemberEvents

	traffic trafficCounters // gossip by mechanism (traffic.go)

	// Spread queries waiting for members' answers (spread.go).
	spreadMu sync.Mutex
	spreads  map[uint64]*spreadStart

	// Disk state (disk.go): why writes are refused, if they are.
	noSpace    atomic.Pointer[string]
	failed     atomic.Pointer[string]
	minFree    uint64
	diskNext   time.Time // loop-owned: next free-space check
	diskAvail  atomic.Uint64
	storageLog logThrottle

	// The syncer (disk.go): kicked when the loop has committed a batch.
	syncKick chan struct{}
	syncDone chan struct{}
	// Sync latency (syncwatch.go): the bound, the recent syncs, and the
	// loop's next look at them.
	slowSync  time.Duration
	syncWatch syncWatch
	syncNext  time.Time

	keys keys // the gossip keyring and its operations (keys.go)

	badFrames badFrameStats // bad frames held against no member (badframes.go)
}

// snapshot is what the loop publishes for readers outside it.
type snapshot struct {
	members []Member
	stats   engine.Stats
	joined  bool
	joinErr string
	leave   [2]int // acked, sent

	clockOffset time.Duration
	clockPeers  int
	clockErr    error // why writes are refused for the clock
}

type request struct {
	// exactly one of these
	write  *writeReq
	join   []string
	seeds  []string // new addresses for the join retries (seed names re-resolved)
	leave  bool
	spread *spreadReq
	done   chan result
}

type writeReq struct {
	key, value []byte
	tombstone  bool
}

type result struct {
	version Version
	spread  *spreadStart
	err     error
}

const metaNodeID = "node-id"

// Open starts a node: it opens (or creates) the store, binds the transport,
// and starts joining the seeds.
func Open(cfg Config) (*Node, error) {
	if cfg.Identity != nil && cfg.Name == "" && cfg.Identity.Cert != nil {
		cfg.Name = cfg.Identity.Cert.Subject.CommonName
	}
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	cfg.Protocol = protocolDefaults(cfg.Protocol)
	if cfg.Protocol.Cluster == "" {
		cfg.Protocol.Cluster = engine.DefaultConfig().Cluster
	}
	if cfg.Protocol.MaxValueSize <= 0 {
		cfg.Protocol.MaxValueSize = store.DefaultMaxValueSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.Name)
	var st store.Store
	if cfg.DataDir == "" {
		st = memstore.NewWithOptions(memstore.Options{ChangeLog: cfg.ChangeLog})
	} else {
		ps, err := pebblestore.Open(cfg.DataDir, pebblestore.Options{Logger: log, NoSync: cfg.NoSync, ChangeLog: cfg.ChangeLog})
		if err != nil {
			return nil, fmt.Errorf("hearsay: %w", err)
		}
		st = ps
	}
	n, err := open(cfg, log, st)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return n, nil
}

func open(cfg Config, log *slog.Logger, st store.Store) (*Node, error) {
	if wrapStore != nil {
		st = wrapStore(st, log)
	}
	n := &Node{cfg: cfg, log: log, raw: st}
	n.st = guardedStore{Store: st, n: n}
	var signer *certs.Identity
	var id uint64
	var err error
	if cfg.Identity != nil {
		if signer, err = cfg.Identity.signer(cfg.Name, time.Now()); err != nil {
			return nil, err
		}
		id, err = bindNodeID(st, signer.NodeID(), cfg.DataDir)
	} else {
		id, err = loadNodeID(st)
	}
	if err != nil {
		return nil, err
	}
	if signer != nil {
		if n.certs, err = loadCerts(cfg, log); err != nil {
			return nil, err
		}
	}
	ring, ringPath, err := loadKeyring(cfg, log)
	if err != nil {
		return nil, err
	}
	n.keys = keys{ring: ring, path: ringPath, run: make(chan struct{}, 1), reqs: make(chan *wire.Envelope, keyReqQueue), done: make(chan struct{})}
	tr, err := transport.New(transport.Config{
		BindAddr:      cfg.BindAddr,
		AdvertiseAddr: cfg.AdvertiseAddr,
		MaxFrame:      cfg.Protocol.MaxValueSize + (1 << 20),
		Keyring:       ring,
		Certs:         n.certs.transportAuth(),
		Logger:        log,
		MaxConns:      cfg.MaxGossipConns,
		MaxConnsPerIP: cfg.MaxGossipConnsPerIP,
	})
	if err != nil {
		return nil, fmt.Errorf("hearsay: %w", err) // the transport's errors say "transport: "
	}
	pc := cfg.Protocol
	pc.Name, pc.NodeID, pc.Addr = cfg.Name, id, tr.AdvertiseAddr()
	if signer != nil {
		pc.Signer = signer
		pc.CheckReserved = n.certs.checkReserved
		pc.Revoked = n.certs.revoked.Revoked
	}
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	rng := mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:]), binary.LittleEndian.Uint64(seed[8:])))
	now := time.Now()
	eng, err := engine.New(pc, n.st, rng, now)
	if err != nil {
		_ = tr.Close()
		return nil, fmt.Errorf("hearsay: %w", err)
	}
	rev := st.Revision()
	if err := st.Sync(); err != nil {
		_ = tr.Close()
		return nil, fmt.Errorf("hearsay: sync store: %w", err)
	}
	if n.certs != nil {
		names, err := n.certs.loadRevocations(st)
		if err != nil {
			_ = tr.Close()
			return nil, err
		}
		for _, name := range names {
			eng.Revoke(now, name)
		}
	}
	n.durableRev.Store(rev)
	cfg.Protocol = pc
	n.cfg, n.tr, n.eng, n.nodeID, n.started = cfg, tr, eng, id, now
	n.core = driver.New(eng, runtimeOutputs{n})
	n.reqs, n.closing, n.done = make(chan request, 1024), make(chan struct{}), make(chan struct{})
	n.syncKick, n.syncDone = make(chan struct{}, 1), make(chan struct{})
	n.watchers = map[*watcher]struct{}{}
	n.slowSync = cfg.SlowSync
	if n.slowSync == 0 {
		n.slowSync = DefaultSlowSync
	}
	n.initDisk()
	// A node back from an absence longer than the tombstone grace period
	// serves nothing until anti-entropy has pulled a full reconciliation.
	n.ready.Store(eng.Serving())
	n.metrics = newMetrics(n, cfg.Registerer)
	if n.certs != nil && cfg.Registerer != nil {
		if err := cfg.Registerer.Register(certCollector{n}); err != nil {
			log.Warn("certificate metrics not registered", "err", err)
		}
	}
	if len(cfg.Seeds) > 0 {
		addrs := n.seedAddrs(context.Background(), cfg.Seeds)
		eng.Join(now, addrs)
		if hasSeedNames(cfg.Seeds) {
			go n.keepResolvingSeeds(cfg.Seeds, addrs)
		}
	}
	n.publish(now, true)
	storage := slog.String("data_dir", cfg.DataDir)
	if cfg.DataDir == "" {
		storage = slog.String("storage", "memory")
	}
	log.Info("node started", "addr", tr.AdvertiseAddr(), "bind", tr.LocalAddr(), "node_id", fmt.Sprintf("%016x", id),
		"incarnation", eng.Self().Incarnation, storage, "seeds", cfg.Seeds)
	go n.loop()
	go n.syncer()
	go n.keyServer()
	return n, nil
}

// protocolDefaults returns p, or engine.DefaultConfig if p sets nothing but
// its cluster name and value size limit (kept): a Config built without
// DefaultConfig gets the defaults rather than every mechanism off and
// every timer at zero. A Protocol that sets anything else is used as it is
// and checked by the engine (engine.Config.Validate).
func protocolDefaults(p engine.Config) engine.Config {
	rest := p
	rest.Name, rest.NodeID, rest.Addr, rest.Cluster, rest.MaxValueSize = "", 0, "", "", 0
	if !reflect.ValueOf(rest).IsZero() {
		return p
	}
	d := engine.DefaultConfig()
	if p.Cluster != "" {
		d.Cluster = p.Cluster
	}
	if p.MaxValueSize > 0 {
		d.MaxValueSize = p.MaxValueSize
	}
	return d
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("hearsay: config: Name is required")
	case len(name) > 128:
		return fmt.Errorf("hearsay: config: Name %.20q... longer than 128 bytes", name)
	case strings.ContainsAny(name, "\x00\n"):
		return fmt.Errorf("hearsay: config: Name %q contains a NUL or newline", name)
	}
	return nil
}

// loadNodeID returns the node id kept in the store, creating a random one
// on first start. The id, not the name, breaks ties between versions, so it
// must never be reused by another node.
func loadNodeID(st store.Store) (uint64, error) {
	v, ok, err := st.GetMeta([]byte(metaNodeID))
	if err != nil {
		return 0, fmt.Errorf("hearsay: read node id: %w", err)
	}
	if ok {
		if len(v) != 8 || bytesToID(v) == 0 {
			return 0, fmt.Errorf("hearsay: corrupt node id in store (%d bytes)", len(v))
		}
		return bytesToID(v), nil
	}
	var b [8]byte
	for binary.BigEndian.Uint64(b[:]) == 0 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("hearsay: generate node id: %w", err)
		}
	}
	if err := st.SetMeta([]byte(metaNodeID), b[:]); err != nil {
		return 0, fmt.Errorf("hearsay: write node id: %w", err)
	}
	return bytesToID(b[:]), nil
}

func bytesToID(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func idToBytes(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// wallSkew, when set (only by test builds with the faultinject tag), says
// how far this node's wall clock is to be wrong: the loop hands it to the
// engine (Engine.SetWallOffset) before each batch, so the node stamps
// versions and clock samples with a wrong clock while its timers run on
// the monotonic clock, as when an operator or NTP sets the clock wrong.
var wallSkew func() time.Duration

// loop is the event loop: the only goroutine that touches the engine. It
// takes inputs in batches and commits each through the driver core
// (internal/driver), which the simulator runs too.
func (n *Node) loop() {
	defer close(n.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var waiting []pending
	// Release what Open queued (join requests, our alive announcement).
	waiting = n.commit(time.Now(), waiting)
	for {
		if wallSkew != nil {
			n.eng.SetWallOffset(wallSkew())
		}
		now := time.Now()
		if d := earliestTime(earliestTime(n.eng.Deadline(), n.checkDisk(now)), n.watchSync(now)); !d.IsZero() {
			timer.Reset(max(d.Sub(now), 0))
		}
		select {
		case <-n.closing:
			for _, w := range waiting {
				w.done <- result{err: ErrClosed}
			}
			return
		case r := <-n.reqs:
			waiting = n.handle(time.Now(), r, waiting)
		case in := <-n.tr.Incoming():
			n.step(time.Now(), in)
		case b := <-n.tr.BadFrames():
			n.badFrame(time.Now(), b)
		case <-timer.C:
		}
		// Take whatever else is queued, up to a bound, into the same batch:
		// one fsync then covers all of it.
	batch:
		for range driver.MaxBatch - 1 {
			select {
			case r := <-n.reqs:
				waiting = n.handle(time.Now(), r, waiting)
			case in := <-n.tr.Incoming():
				n.step(time.Now(), in)
			default:
				break batch
			}
		}
		waiting = n.commit(time.Now(), waiting)
	}
}

// tickFailed logs a failed tick: through the throttle when the store is
// full or failed, since every tick then fails alike.
func (n *Node) tickFailed(err error) {
	if isStorageError(err) {
		n.storageLog.log(n.log, slog.LevelWarn, "protocol tick failed: store refuses writes", "err", err)
		return
	}
	n.log.Error("protocol tick failed", "err", err)
}

func earliestTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// pending is a request answered once its condition holds (join, leave).
type pending struct {
	done  chan result
	until func(s *snapshot) bool
}

// handle takes one request: a write joins the batch's writes (made
// together at the commit), the others are handed to the engine at once,
// after the writes before them.
func (n *Node) handle(now time.Time, r request, waiting []pending) []pending {
	if w := r.write; w != nil {
		done := r.done
		accepted := func(store.Record) { n.metrics.writes.Inc() }
		n.core.Write(now, engine.WriteOp{Key: w.key, Value: w.value, Tombstone: w.tombstone}, accepted, func(rec store.Record, err error) {
			switch {
			case err == nil:
				done <- result{version: rec.Version}
			case errors.Is(err, driver.ErrNotDurable):
				done <- result{err: fmt.Errorf("hearsay: %w", err)}
			default:
				if isStorageError(err) {
					n.storageFailure(err)
				}
				done <- result{err: err}
			}
		})
		return waiting
	}
	n.core.Flush()
	switch {
	case r.join != nil:
		n.eng.Join(now, r.join)
		return append(waiting, pending{done: r.done, until: func(s *snapshot) bool { return s.joined }})
	case r.seeds != nil:
		n.eng.SetSeeds(r.seeds)
		r.done <- result{}
	case r.spread != nil:
		r.done <- n.startSpread(r.spread)
	case r.leave:
		if err := n.eng.Leave(now); err != nil {
			n.log.Error("leave: incarnation not saved; a restart may not supersede the leave at once", "err", err)
		}
		return append(waiting, pending{done: r.done, until: func(s *snapshot) bool { return s.leave[0] >= s.leave[1] }})
	}
	return waiting
}

func (n *Node) step(now time.Time, in *transport.Incoming) {
	if in.Refusal != "" {
		n.eng.Refused(in.From, in.Refusal)
		n.keyRefused(in.From, in.Refusal)
		return
	}
	n.metrics.received.WithLabelValues(in.Env.Kind()).Inc()
	n.metrics.receivedBytes.WithLabelValues(in.Env.Kind()).Add(float64(in.Size))
	n.traffic.received(in.Env, in.Size)
	switch in.Env.Body.(type) {
	case *wire.Envelope_KeyOp, *wire.Envelope_KeyOpReply:
		n.stepKeyOp(in.Env) // the runtime's, not the engine's
		return
	}
	if err := n.core.Step(now, in.Env); err != nil {
		if errors.Is(err, engine.ErrQuarantined) || errors.Is(err, engine.ErrRateLimited) {
			return // counted in hearsay_quarantine_dropped_messages_total, hearsay_rate_limited_messages_total
		}
		if isStorageError(err) {
			// Not acknowledged: the sender keeps the records.
			n.storageLog.log(n.log, slog.LevelWarn, "received records not applied: store refuses writes", "from", in.From, "kind", in.Env.Kind(), "err", err)
			return
		}
		n.log.Warn("refused message", "from", in.From, "sender", in.Env.From, "kind", in.Env.Kind(), "err", err)
	}
}

// commit ends a batch through the driver core, which sends at once the
// messages that depend on no sync and queues the rest (messages carrying
// or acknowledging records, watch events, write acknowledgements) for the
// syncer; then it logs, publishes the snapshot, answers the requests whose
// condition now holds and wakes the syncer.
func (n *Node) commit(now time.Time, waiting []pending) []pending {
	rd, err := n.core.Commit(now)
	if err != nil {
		n.tickFailed(err)
	}
	n.routeSpread(rd.Spread)
	for _, ev := range rd.MemberEvents {
		n.logMemberEvent(ev)
	}
	for _, q := range rd.Quarantine {
		if q.Quarantined {
			n.log.Warn("peer quarantined: its messages are dropped until its score recovers", "peer", q.Peer, "offence", q.Kind, "penalty", math.Round(q.Penalty))
		} else {
			n.log.Info("peer released from quarantine", "peer", q.Peer)
		}
	}
	n.memberFeed.publish(n.cfg.Name, now, rd.MemberEvents)
	n.ready.Store(n.eng.Serving())
	prev := n.view.Load()
	s := n.publish(now, len(rd.MemberEvents) > 0 || len(rd.Quarantine) > 0)
	n.logJoin(prev, s)
	keep := waiting[:0]
	for _, p := range waiting {
		if p.until(s) {
			p.done <- result{}
		} else {
			keep = append(keep, p)
		}
	}
	clear(waiting[len(keep):])
	n.kickSync()
	return keep
}

func (n *Node) logMemberEvent(ev membership.Event) {
	m := ev.Member
	switch {
	case ev.Removed:
		n.log.Info("member reaped", "member", m.Name, "addr", m.Addr, "state", stateName(m.State), "incarnation", m.Incarnation)
	case ev.Joined:
		n.log.Info("member discovered", "member", m.Name, "addr", m.Addr, "state", stateName(m.State), "incarnation", m.Incarnation)
	case m.Revoked:
		n.log.Warn("member revoked: its certificate was revoked, it is expelled", "member", m.Name, "addr", m.Addr)
	case m.State == wire.State_DEAD:
		n.log.Warn("member declared dead", "member", m.Name, "addr", m.Addr, "incarnation", m.Incarnation)
	default:
		n.log.Info("member state changed", "member", m.Name, "from", stateName(ev.Prev), "to", stateName(m.State), "incarnation", m.Incarnation)
	}
}

// logJoin logs the moment the node joins, and each new cause of a failing
// join: once per change, so a join retried against the same fault does not
// flood the log.
func (n *Node) logJoin(prev, s *snapshot) {
	switch {
	case s.joined && !prev.joined:
		n.log.Info("joined the cluster", "members", len(s.members))
	case !s.joined && s.joinErr != "" && s.joinErr != prev.joinErr:
		n.log.Warn("join failed, retrying", "seeds", n.cfg.Seeds, "err", s.joinErr)
	}
}

// membersRefresh bounds how stale the published member list may be when no
// member changed state (incarnations and addresses can change without an
// event).
const membersRefresh = 100 * time.Millisecond

// publish stores a snapshot for readers outside the loop. Rebuilding the
// member list costs O(n log n), so a batch reuses the previous list unless
// a member changed state or membersRefresh has passed: a busy node commits
// thousands of batches a second.
func (n *Node) publish(now time.Time, membersChanged bool) *snapshot {
	var out []Member
	if prev := n.view.Load(); prev != nil && !membersChanged && now.Sub(n.membersAt) < membersRefresh {
		out = prev.members
	} else {
		ms := n.eng.Members()
		self := n.eng.Self().Name
		out = make([]Member, len(ms))
		for i, m := range ms {
			out[i] = Member{Name: m.Name, Address: m.Addr, State: memberState(m), Incarnation: m.Incarnation, Self: m.Name == self,
				Outbox: n.eng.Outbox(m.Name), Quarantined: m.Quarantined}
			if sc := n.eng.Score(now, m.Name); sc <= -0.5 {
				out[i].Score = math.Round(sc)
			}
			if m.Clock.Measured() {
				off := m.Clock.Offset.Seconds()
				out[i].ClockOffset = &off
			}
		}
		n.membersAt = now
	}
	acked, sent := n.eng.LeaveAcked()
	s := &snapshot{members: out, stats: n.eng.Stats(), joined: n.eng.Joined(), joinErr: n.eng.JoinError(), leave: [2]int{acked, sent}}
	s.clockOffset, s.clockPeers, s.clockErr = n.eng.ClockStatus(now)
	n.logClock(now, s.clockErr)
	n.view.Store(s)
	return s
}

// clockLogEvery bounds how often a clock fault that lasts is logged again.
const clockLogEvery = time.Minute

// logClock logs when writes start or stop being refused for the clock,
// and again once a minute while they are.
func (n *Node) logClock(now time.Time, err error) {
	switch {
	case err != nil && (!n.clockBad || now.Sub(n.clockLoggedAt) >= clockLogEvery):
		level := slog.LevelError
		if strings.Contains(err.Error(), "not measured yet") && now.Sub(n.started) < clockLogEvery {
			// The first round trip after a start or a join: a moment, not a
			// fault, unless it lasts.
			level = slog.LevelInfo
		}
		n.log.Log(context.Background(), level, "writes refused: clock offset", "err", err)
		n.clockBad, n.clockLoggedAt = true, now
	case err == nil && n.clockBad:
		n.log.Info("clock offset back within bound: writes accepted again")
		n.clockBad = false
	}
}

func stateName(s wire.State) MemberState {
	switch s {
	case wire.State_SUSPECT:
		return StateSuspect
	case wire.State_DEAD:
		return StateDead
	case wire.State_LEFT:
		return StateLeft
	}
	return StateAlive
}

// do sends a request to the loop and waits for its answer.
func (n *Node) do(ctx context.Context, r request) (result, error) {
	r.done = make(chan result, 1)
	select {
	case n.reqs <- r:
	case <-n.closing:
		return result{}, ErrClosed
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res, res.err
	case <-n.done:
		return result{}, ErrClosed
	case <-ctx.Done():
		// The write may still happen; the caller just stops waiting.
		return result{}, ctx.Err()
	}
}

func (n *Node) usable() error {
	select {
	case <-n.closing:
		return ErrClosed
	default:
	}
	if !n.ready.Load() {
		return ErrNotReady
	}
	return nil
}

func (n *Node) write(ctx context.Context, key, value []byte, tomb bool) (Version, error) {
	if err := n.usable(); err != nil {
		return Version{}, err
	}
	if err := n.writeRefusal(); err != nil {
		return Version{}, err
	}
	if err := store.Check(store.Record{Key: key, Value: value}, n.cfg.Protocol.MaxValueSize); err != nil {
		return Version{}, err
	}
	// The engine keeps the record until it is sent: give it its own copy.
	res, err := n.do(ctx, request{write: &writeReq{key: bytes.Clone(key), value: bytes.Clone(value), tombstone: tomb}})
	return res.version, err
}

// Put writes key=value and returns the version it was written at, once the
// write is durable here. The write then spreads to the other members.
func (n *Node) Put(ctx context.Context, key, value []byte) (Version, error) {
	if err := checkClientKey(key); err != nil {
		return Version{}, err
	}
	return n.write(ctx, key, value, false)
}

// Delete removes key by writing a tombstone, and returns its version.
// Deleting an absent key still writes a tombstone, so that a concurrent
// older write elsewhere cannot come back.
func (n *Node) Delete(ctx context.Context, key []byte) (Version, error) {
	if err := checkClientKey(key); err != nil {
		return Version{}, err
	}
	return n.write(ctx, key, nil, true)
}

// Get returns the current value of key, or ErrNotFound.
func (n *Node) Get(ctx context.Context, key []byte) (Entry, error) {
	if err := n.usable(); err != nil {
		return Entry{}, err
	}
	if err := store.Check(store.Record{Key: key}, n.cfg.Protocol.MaxValueSize); err != nil {
		return Entry{}, err
	}
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	r, ok, err := n.st.Get(key)
	if err != nil {
		return Entry{}, fmt.Errorf("hearsay: get %q: %w", key, err)
	}
	if !ok || r.Tombstone {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return Entry{Key: r.Key, Value: r.Value, Version: r.Version}, nil
}

// Scan returns up to limit live entries whose key has the given prefix and
// is at or after start, in key order. limit <= 0 means no limit.
func (n *Node) Scan(ctx context.Context, prefix, start []byte, limit int) ([]Entry, error) {
	if err := n.usable(); err != nil {
		return nil, err
	}
	var out []Entry
	var ctxErr error
	err := n.st.Scan(prefix, start, func(r store.Record) bool {
		if ctxErr = ctx.Err(); ctxErr != nil {
			return false
		}
		if r.Tombstone {
			return true
		}
		out = append(out, Entry{Key: r.Key, Value: r.Value, Version: r.Version})
		return limit <= 0 || len(out) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("hearsay: scan %q: %w", prefix, err)
	}
	if ctxErr != nil {
		return nil, ctxErr
	}
	return out, nil
}

// Members returns the membership view, this node included, sorted by name.
func (n *Node) Members() []Member {
	return append([]Member(nil), n.view.Load().members...)
}

// signing names how this node's records are signed.
func (n *Node) signing() string {
	if n.cfg.Protocol.Signer != nil {
		return engine.SigningEd25519
	}
	return "none"
}

// Status describes this node.
func (n *Node) Status() Status {
	s := n.view.Load()
	st := Status{
		Name:          n.cfg.Name,
		NodeID:        fmt.Sprintf("%016x", n.nodeID),
		Address:       n.tr.AdvertiseAddr(),
		Signing:       n.signing(),
		Serving:       n.ready.Load(),
		Joined:        s.joined,
		LastJoinError: s.joinErr,
		Members:       len(s.members),
		Started:       n.started,
		Outbox:        s.stats.Mail.OutboxRecords,
		ClockOffset:   s.clockOffset.Seconds(),
		ClockPeers:    s.clockPeers,
		Revision:      n.durableRev.Load(),
	}
	if !st.Serving {
		st.NotReady = append(st.NotReady, "recovering: back from an absence longer than the tombstone grace period, reconciling with a peer before serving")
	}
	if r := n.failed.Load(); r != nil {
		st.NotReady = append(st.NotReady, *r)
	}
	if r := n.noSpace.Load(); r != nil {
		st.NotReady = append(st.NotReady, *r)
	}
	if _, ok := n.raw.(diskStore); ok {
		l := n.syncWatch.stats(time.Now())
		st.SyncSeconds = &l
		if r := n.slowSyncReason(l); r != "" {
			st.SlowSync = true
			st.NotReady = append(st.NotReady, r)
		}
	}
	if !st.Joined {
		reason := fmt.Sprintf("not joined: no seed of %v has answered yet", n.cfg.Seeds)
		if s.joinErr != "" {
			reason = "not joined: " + s.joinErr
		}
		st.NotReady = append(st.NotReady, reason)
	}
	if s.clockErr != nil {
		st.NotReady = append(st.NotReady, "clock: "+strings.TrimPrefix(s.clockErr.Error(), "engine: "))
	}
	st.Ready = len(st.NotReady) == 0
	for _, m := range s.members {
		if m.State == StateAlive {
			st.Alive++
		}
	}
	return st
}

// Join contacts the given gossip addresses and joins the cluster through
// the first that answers, retrying with backoff until ctx is done. It
// returns the number of members known once joined.
func (n *Node) Join(ctx context.Context, seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, errors.New("hearsay: join: no seed addresses")
	}
	if _, err := n.do(ctx, request{join: n.seedAddrs(ctx, seeds)}); err != nil {
		return 0, fmt.Errorf("hearsay: join %v: %w", seeds, err)
	}
	return len(n.view.Load().members), nil
}

// Leave announces a graceful departure and waits, until every live member
// has acknowledged it or ctx is done, for the announcement to arrive. After
// Leave the node no longer probes anyone; Close it.
func (n *Node) Leave(ctx context.Context) error {
	if _, err := n.do(ctx, request{leave: true}); err != nil {
		return fmt.Errorf("hearsay: leave: %w", err)
	}
	return nil
}

// Close stops the node and closes the store. It does not announce a leave:
// call Leave first for a graceful departure. Close is idempotent.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	close(n.closing)
	<-n.done
	<-n.syncDone
	<-n.keys.done
	n.closeWatchers()
	n.memberFeed.close()
	n.metrics.unregister()
	errT := n.tr.Close()
	errS := n.st.Close()
	if err := errors.Join(errT, errS); err != nil {
		return fmt.Errorf("hearsay: close: %w", err)
	}
	n.log.Info("node closed")
	return nil
}
