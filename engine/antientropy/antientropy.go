// Package antientropy implements anti-entropy, the mechanism of Demers et
// al., "Epidemic Algorithms for Replicated Database Maintenance" (1987),
// §1.3, that guarantees convergence: every interval a node picks a live peer
// uniformly at random and the two reconcile their whole replicas, in one of
// the paper's three directions: push (the initiator fixes the peer), pull
// (the initiator fixes itself) or push-pull (both).
//
// # Digests first
//
// An exchange starts with digests, so that its cost follows the number of
// differing records d rather than the store size N. Each store keeps a
// rateless invertible Bloom lookup table over its records' identities
// (package store/digest), updated in place on every write. The initiator
// sends a first prefix of its cells; the responder subtracts its own and
// peels. Equal replicas agree in one round trip of a few hundred bytes;
// unequal ones ask for longer prefixes, sized from an estimate of d (see
// nextPrefix), until the difference decodes (about 1.35·d cells), and the
// responder then knows, for every differing
// key, which side holds what and how new: it asks for the records it lacks
// (AEDiff.want) and streams those the initiator lacks, as the mode allows.
// A difference too large for the digests falls back to a full exchange.
//
// # Streams and bounds
//
// Records travel in chunks of at most Config.ChunkBytes, numbered, with at
// most Config.Window chunks unacknowledged per stream, so neither side ever
// holds more than a window of the other's replica in memory whatever N is.
// A chunk is acknowledged once the driver has made its records durable.
// Full exchange, the baseline the digests are measured against, streams
// every record in key order the same way.
//
// # Death certificates
//
// Tombstones reconcile like any record and are collected once older than
// Config.TombstoneGrace, by a bounded incremental sweep (Config.SweepBatch
// tombstones every Config.SweepInterval, read through the store's
// tombstone index): no rescan of the store per tick. An
// expired tombstone is never sent to a peer that lacks the key. A node that
// was stopped for longer than the grace period (the store keeps when it was
// last alive) could hold records whose deletion it never heard of and whose
// death certificates are gone; it is Serving only after a full pull from a
// peer, in which it also drops the records older than the grace period that
// the peer lacks (they were deleted and collected), so deleted data does not
// come back.
//
// The package is pure: time and randomness come from the caller, and the
// order of everything it sends depends only on its inputs.
package antientropy

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/internal/hlc"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/digest"
)

// Mode is the direction of an exchange.
type Mode int

// The directions of Demers et al. §1.3.
const (
	PushPull Mode = iota
	Push
	Pull
)

// String returns "push-pull", "push" or "pull".
func (m Mode) String() string {
	switch m {
	case Push:
		return "push"
	case Pull:
		return "pull"
	}
	return "push-pull"
}

// ParseMode parses "push", "pull" or "push-pull".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "push":
		return Push, nil
	case "pull":
		return Pull, nil
	case "push-pull":
		return PushPull, nil
	}
	return 0, fmt.Errorf("antientropy: unknown mode %q (want push, pull or push-pull)", s)
}

func (m Mode) wire() wire.AEMode {
	switch m {
	case Push:
		return wire.AEMode_AE_PUSH
	case Pull:
		return wire.AEMode_AE_PULL
	}
	return wire.AEMode_AE_PUSH_PULL
}

// Config tunes anti-entropy.
type Config struct {
	// Enabled makes this node start exchanges, collect tombstones and
	// guard against resurrection. A disabled node still answers peers'
	// exchanges.
	Enabled bool
	// Interval is the time between two exchanges a node starts, jittered
	// by Jitter: each wait is drawn uniformly from
	// [Interval·(1−Jitter), Interval], so nodes do not exchange in step.
	Interval time.Duration
	Jitter   float64
	// Mode is the direction of the exchanges this node starts.
	Mode Mode
	// FullExchange skips digests: both sides stream every record (as the
	// mode directs). The baseline digests are measured against.
	FullExchange bool
	// Timeout abandons an exchange that has made no progress for this
	// long; it is counted as stalled. Every message of an exchange is
	// progress (a chunk of records is acknowledged once synced), so 5 s
	// without any is a lost message, not a slow one; waiting 30 s left
	// replicas under 10% loss apart for 90 s after the last fault
	// (sim seed 10), against 13 s with 5 s.
	Timeout time.Duration
	// InitialCells is the number of digest cells the first message
	// carries: enough to decode small differences in one round trip, few
	// enough that equal replicas agree in a few hundred bytes.
	InitialCells int
	// ChunkBytes bounds the records of one chunk, and Window the chunks
	// in flight per stream: the memory an exchange needs, whatever N.
	ChunkBytes int
	Window     int
	// MaxSessions bounds the exchanges a node answers at once; more are
	// refused as busy and retried at the initiator's next interval.
	MaxSessions int
	// TombstoneGrace is how long a death certificate is kept: it must
	// outlast the time a delete needs to reach every replica (many
	// anti-entropy intervals) and any outage a node is expected to come
	// back from without a full pull.
	TombstoneGrace time.Duration
	// SweepInterval and SweepBatch pace tombstone collection: every
	// SweepInterval the sweep visits the next SweepBatch tombstones
	// (Store.ScanTombstones), so a pass over N tombstones takes
	// N/SweepBatch intervals, whatever the number and size of live records.
	SweepInterval time.Duration
	SweepBatch    int
	// AliveInterval is how often the node records in its store that it is
	// alive, which is how it tells, after a restart, how long it was away.
	AliveInterval time.Duration
}

// DefaultConfig returns the defaults for a LAN cluster: an exchange every
// 5 to 10 seconds per node (so every node takes part in about two per
// interval, one started and one answered), push-pull, and a grace period of
// 7 days.
func DefaultConfig() Config {
	return Config{
		Enabled:        true,
		Interval:       10 * time.Second,
		Jitter:         0.5,
		Mode:           PushPull,
		Timeout:        5 * time.Second,
		InitialCells:   16,
		ChunkBytes:     64 << 10,
		Window:         4,
		MaxSessions:    4,
		TombstoneGrace: 7 * 24 * time.Hour,
		SweepInterval:  time.Second,
		SweepBatch:     1000,
		AliveInterval:  time.Minute,
	}
}

// Stats counts what anti-entropy did.
type Stats struct {
	Started       uint64 // exchanges this node started
	Completed     uint64 // of those, completed
	Served        uint64 // exchanges started by a peer and completed
	InSync        uint64 // exchanges (either role) that found equal replicas
	Stalled       uint64 // exchanges abandoned after Timeout
	Busy          uint64 // exchanges refused as busy (by either side)
	Errors        uint64 // exchanges ended by an error from the peer
	BadDigests    uint64 // malformed or inconsistent digests received
	FullFallbacks uint64 // differences too large for the digests
	CellsSent     uint64
	RecordsSent   uint64
	RecordsRecv   uint64
	Repaired      uint64 // received records that changed the store
	Collected     uint64 // tombstones collected after the grace period
	Dropped       uint64 // records dropped by a recovering node (deleted elsewhere)
	Recovered     uint64 // full pulls that ended a recovery
	Isolated      uint64 // recoveries started because no exchange completed for longer than the grace period
	Active        int    // exchanges in progress
}

// Sampler returns up to k live peers chosen uniformly at random.
type Sampler func(rng *rand.Rand, k int) []string

// SendFunc queues env for a peer; false if the peer cannot be reached.
type SendFunc func(peer string, env *wire.Envelope) bool

// MergeFunc merges records received from peer last-writer-wins, validating
// them as every received record is, and returns those that changed the
// store. Its error is a store failure, which ends the exchange.
type MergeFunc func(now time.Time, peer string, recs []*wire.Record) (changed []store.Record, err error)

// ApplyTo returns a MergeFunc that applies records to st last-writer-wins,
// with none of the engine's checks (size limits, clock skew): for tools
// and tests that run a Reconciler on its own.
func ApplyTo(st store.Store) MergeFunc {
	return func(_ time.Time, _ string, ws []*wire.Record) ([]store.Record, error) {
		recs := make([]store.Record, len(ws))
		for i, w := range ws {
			recs[i] = w.Store()
		}
		changed, err := st.Apply(recs)
		if err != nil {
			return nil, err
		}
		var out []store.Record
		for i, c := range changed {
			if c {
				out = append(out, recs[i])
			}
		}
		return out, nil
	}
}

// Errors a peer's messages can cause.
var (
	ErrBadDigest = errors.New("antientropy: malformed or inconsistent digest")
	ErrProtocol  = errors.New("antientropy: unexpected message")
)

const metaAlive = "ae/alive"

// maxCellsPerMessage bounds one AEMore request (about 550 KB of cells).
const maxCellsPerMessage = 1 << 14

// Reconciler is one node's anti-entropy state. It is not safe for
// concurrent use.
type Reconciler struct {
	self    string
	cfg     Config
	st      store.Store
	rng     *rand.Rand
	sample  Sampler
	onStall func(now time.Time, peer string) // see SetOnStall
	send    SendFunc
	merge   MergeFunc

	sessions   map[sessionKey]*session
	next       time.Time // next exchange
	nextSweep  time.Time
	sweepAfter []byte // the sweep resumes after this key; nil: from the start
	nextAlive  time.Time
	recovering bool
	// lastSync is when an exchange last completed, in either role: a
	// running node cut off from every peer for longer than the grace period
	// is as stale as one that was down that long.
	lastSync time.Time
	stats    Stats
}

type sessionKey struct {
	peer string
	id   uint64
}

// session is one exchange, from the side of either party.
type session struct {
	key        sessionKey
	initiator  bool
	mode       wire.AEMode
	full       bool
	recovering bool // the initiator was recovering when it started
	deadline   time.Time

	// The digest phase: the initiator keeps a view of its cells to answer
	// AEMore; the responder a view of its own and the decoder.
	// The initiator's phase ends with AEDiff (diffed).
	digesting bool
	diffed    bool
	// answered: the peer has sent something for this session. Until it
	// has, the initiator gives up after one interval rather than Timeout,
	// since a lost AEStart would otherwise block the pair.
	answered bool

	// view is this side's digest as it was when the exchange compared it
	// first (digest.View: nothing is copied unless the digest changes
	// while the exchange runs).
	view    *digest.View
	dec     *digest.Decoder
	limit   int
	changes uint64 // the responder's digest changes when it took view

	out *outStream
	in  *inStream
}

// push reports whether the initiator's records go to the responder.
func (s *session) push() bool { return s.mode != wire.AEMode_AE_PULL }

// pull reports whether the responder's records go to the initiator.
func (s *session) pull() bool { return s.mode != wire.AEMode_AE_PUSH }

// outStream is the records this side sends: the current records of given
// key hashes, or (full) every record in key order.
type outStream struct {
	hashes  []uint64
	full    bool
	after   []byte // full: the last key sent
	seq     uint32
	unacked int
	last    bool // the last chunk is sent
}

func (o *outStream) done() bool { return o.last && o.unacked == 0 }

// inStream is the records this side receives, processed in order.
type inStream struct {
	next uint32
	buf  map[uint32]*wire.AERecords
	done bool
}

// New returns the reconciler of the member named self over st. It reads when the node was last alive:
// a node with records that was away longer than the grace period starts
// recovering (not Serving).
func New(self string, cfg Config, st store.Store, rng *rand.Rand, now time.Time, sample Sampler, send SendFunc, merge MergeFunc) (*Reconciler, error) {
	r := &Reconciler{self: self, cfg: cfg, st: st, rng: rng, sample: sample, send: send, merge: merge, sessions: map[sessionKey]*session{}}
	if !cfg.Enabled {
		return r, nil
	}
	r.lastSync = now
	v, ok, err := st.GetMeta([]byte(metaAlive))
	if err != nil {
		return nil, fmt.Errorf("antientropy: read last-alive time: %w", err)
	}
	if ok && len(v) != 8 {
		return nil, fmt.Errorf("antientropy: corrupt last-alive time: %d bytes", len(v))
	}
	if ok && st.Digest().Items() > 0 {
		last := time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
		r.recovering = now.Sub(last) > cfg.TombstoneGrace
	}
	if err := r.markAlive(now); err != nil {
		return nil, err
	}
	if r.recovering {
		r.next = now // reconcile as soon as a peer is known
	} else {
		r.next = now.Add(r.interval())
	}
	r.nextSweep = now.Add(cfg.SweepInterval)
	return r, nil
}

func (r *Reconciler) markAlive(now time.Time) error {
	if err := r.st.SetMeta([]byte(metaAlive), binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli()))); err != nil {
		return fmt.Errorf("antientropy: write last-alive time: %w", err)
	}
	r.nextAlive = now.Add(r.cfg.AliveInterval)
	return nil
}

// Serving reports whether the replica may serve reads and writes: false
// while a node that was away longer than the grace period has not yet
// completed a full pull from a peer.
func (r *Reconciler) Serving() bool { return !r.recovering }

// Stats returns the counters.
func (r *Reconciler) Stats() Stats {
	s := r.stats
	s.Active = len(r.sessions)
	return s
}

func (r *Reconciler) interval() time.Duration {
	d := r.cfg.Interval
	if j := r.cfg.Jitter; j > 0 && d > 0 {
		d -= time.Duration(r.rng.Float64() * j * float64(d))
	}
	return max(d, time.Millisecond)
}

// Deadline returns when Tick next has work to do.
func (r *Reconciler) Deadline() time.Time {
	var d time.Time
	for _, s := range r.sessions {
		d = earliest(d, s.deadline)
	}
	if r.cfg.Enabled {
		d = earliest(d, r.next)
		d = earliest(d, r.nextSweep)
		d = earliest(d, r.nextAlive)
	}
	return d
}

// SetOnStall sets a function told of every exchange abandoned for making
// no progress, with its peer: how the engine scores peers that stall
// exchanges.
func (r *Reconciler) SetOnStall(f func(now time.Time, peer string)) { r.onStall = f }

// Tick abandons stalled exchanges and runs what is due: the next exchange,
// a step of the tombstone sweep, the last-alive mark.
func (r *Reconciler) Tick(now time.Time) error {
	for _, k := range r.sortedKeys() {
		if s := r.sessions[k]; !now.Before(s.deadline) {
			delete(r.sessions, k)
			r.stats.Stalled++
			if r.onStall != nil {
				r.onStall(now, k.peer)
			}
		}
	}
	if !r.cfg.Enabled {
		return nil
	}
	if !now.Before(r.nextAlive) {
		if err := r.markAlive(now); err != nil {
			return err
		}
	}
	if !now.Before(r.nextSweep) {
		r.nextSweep = now.Add(r.cfg.SweepInterval)
		if err := r.sweep(now); err != nil {
			return err
		}
	}
	if !r.recovering && now.Sub(r.lastSync) > r.cfg.TombstoneGrace && r.st.Digest().Items() > 0 {
		// No exchange for longer than the grace period, and now a peer
		// is reachable again (a partition healed): the peers may have
		// collected tombstones of records this node still holds. Recover
		// as a node back from a long absence does.
		if peers := r.sample(r.rng, 1); len(peers) > 0 {
			r.recovering = true
			r.next = now
			r.stats.Isolated++
		}
	}
	if !now.Before(r.next) {
		r.next = now.Add(r.interval())
		if r.recovering {
			// Retry soon: the node serves nothing until it has pulled.
			r.next = now.Add(min(r.cfg.Interval, time.Second))
		}
		if err := r.start(now); err != nil {
			return err
		}
	}
	return nil
}

func (r *Reconciler) sortedKeys() []sessionKey {
	keys := make([]sessionKey, 0, len(r.sessions))
	for k := range r.sessions {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b sessionKey) int {
		return cmp.Or(cmp.Compare(a.peer, b.peer), cmp.Compare(a.id, b.id))
	})
	return keys
}

// busyWith reports whether an exchange with peer is in progress, in
// either role: one exchange at a time per pair.
func (r *Reconciler) busyWith(peer string) bool {
	for k := range r.sessions {
		if k.peer == peer {
			return true
		}
	}
	return false
}

// expired reports whether a record written at ts is past the grace period.
func (r *Reconciler) expired(now time.Time, ts uint64) bool {
	return time.UnixMilli(int64(hlc.Physical(ts))).Add(r.cfg.TombstoneGrace).Before(now)
}

// sweep visits the next SweepBatch tombstones and collects those past the
// grace period. It reads the store's tombstone index, not every record:
// reading every value of a store of large values once a second cost 15-20%
// of a core and held the event loop.
func (r *Reconciler) sweep(now time.Time) error {
	var dead []store.Record
	n := 0
	var last []byte
	start := r.sweepAfter
	if start != nil {
		start = append(slices.Clip(start), 0)
	}
	err := r.st.ScanTombstones(start, func(rec store.Record) bool {
		if r.expired(now, rec.Version.HLC) {
			dead = append(dead, rec)
		}
		last = rec.Key
		n++
		return n < r.cfg.SweepBatch
	})
	if err != nil {
		return fmt.Errorf("antientropy: tombstone sweep: %w", err)
	}
	if n < r.cfg.SweepBatch {
		r.sweepAfter = nil // wrapped around
	} else {
		r.sweepAfter = last
	}
	for _, d := range dead {
		if err := r.st.Remove(d.Key, d.Version); err != nil {
			return fmt.Errorf("antientropy: collect tombstone %q: %w", d.Key, err)
		}
		r.stats.Collected++
	}
	return nil
}

// start begins an exchange with a random live peer.
func (r *Reconciler) start(now time.Time) error {
	if peers := r.sample(r.rng, 1); len(peers) > 0 {
		r.Start(now, peers[0])
	}
	return nil
}

// Start begins an exchange with peer now, in the configured mode, unless
// one with peer is in progress; it reports whether it did. Tick calls it
// with a random live peer every interval.
func (r *Reconciler) Start(now time.Time, peer string) bool {
	if r.busyWith(peer) {
		return false
	}
	mode := r.cfg.Mode.wire()
	if r.recovering {
		mode = wire.AEMode_AE_PULL
	}
	s := &session{
		key:        sessionKey{peer, r.rng.Uint64() | 1},
		initiator:  true,
		mode:       mode,
		full:       r.cfg.FullExchange,
		recovering: r.recovering,
		deadline:   now.Add(min(r.cfg.Timeout, r.cfg.Interval)),
	}
	msg := &wire.AEStart{Session: s.key.id, Mode: mode, Full: s.full, Recovering: s.recovering}
	if !s.full {
		s.digesting = true
		s.view = r.st.Digest().View()
		n := min(r.cfg.InitialCells, s.view.Len())
		msg.CellsTotal = uint32(min(s.view.Len(), 1<<31))
		msg.Cells = digest.AppendCells(nil, s.view.Cells(0, n))
		r.stats.CellsSent += uint64(n)
	}
	if !r.send(s.key.peer, &wire.Envelope{Body: &wire.Envelope_AeStart{AeStart: msg}}) {
		return false
	}
	r.sessions[s.key] = s
	r.stats.Started++
	return true
}

// Step handles an anti-entropy message from peer. It returns an error for
// messages it refuses (a bad digest, a protocol violation) and for store
// failures.
func (r *Reconciler) Step(now time.Time, peer string, env *wire.Envelope) error {
	switch b := env.Body.(type) {
	case *wire.Envelope_AeStart:
		return r.onStart(now, peer, b.AeStart)
	case *wire.Envelope_AeMore:
		return r.onMore(now, peer, b.AeMore)
	case *wire.Envelope_AeCells:
		return r.onCells(now, peer, b.AeCells)
	case *wire.Envelope_AeDiff:
		return r.onDiff(now, peer, b.AeDiff)
	case *wire.Envelope_AeRecords:
		return r.onRecords(now, peer, b.AeRecords)
	case *wire.Envelope_AeAck:
		return r.onAck(now, peer, b.AeAck)
	case *wire.Envelope_AeError:
		if s := r.sessions[sessionKey{peer, b.AeError.Session}]; s != nil {
			delete(r.sessions, s.key)
			if b.AeError.Busy {
				r.stats.Busy++
			} else {
				r.stats.Errors++
			}
		}
	}
	return nil
}

func (r *Reconciler) sendError(peer string, id uint64, busy bool, reason string) {
	r.send(peer, &wire.Envelope{Body: &wire.Envelope_AeError{AeError: &wire.AEError{Session: id, Reason: reason, Busy: busy}}})
}

// fail ends session s after a bad message from its peer: the peer is told,
// and nothing more is merged from the exchange.
func (r *Reconciler) fail(s *session, err error) error {
	delete(r.sessions, s.key)
	r.sendError(s.key.peer, s.key.id, false, err.Error())
	return err
}

func (r *Reconciler) badDigest(s *session, err error) error {
	r.stats.BadDigests++
	return r.fail(s, fmt.Errorf("%w from %s: %w", ErrBadDigest, s.key.peer, err))
}

func (r *Reconciler) onStart(now time.Time, peer string, m *wire.AEStart) error {
	key := sessionKey{peer, m.Session}
	if _, dup := r.sessions[key]; dup {
		return nil
	}
	// Two nodes that start exchanges with each other at once: the one
	// started by the node with the smaller name goes on.
	for k, s := range r.sessions {
		if k.peer == peer && s.initiator && !s.answered && peer < r.self {
			delete(r.sessions, k)
		}
	}
	responders := 0
	for _, s := range r.sessions {
		if !s.initiator {
			responders++
		}
	}
	switch {
	case r.recovering && !(m.Recovering && r.self > peer):
		// A recovering node serves nobody, so that nobody pulls its stale
		// records; but when every node is recovering (all of them were
		// cut off from each other), the one with the larger name serves
		// the others, or none would ever serve again. (Larger, because of
		// two exchanges started at once the smaller name's goes on.)
		r.sendError(peer, m.Session, true, "responder is recovering: it serves nothing until it has pulled")
		return nil
	case r.busyWith(peer) || responders >= r.cfg.MaxSessions:
		r.stats.Busy++
		r.sendError(peer, m.Session, true, "busy")
		return nil
	}
	s := &session{key: key, mode: m.Mode, full: m.Full, recovering: m.Recovering, deadline: now.Add(r.cfg.Timeout)}
	r.sessions[key] = s
	if s.full {
		return r.startStreams(now, s, nil, nil)
	}
	d := r.st.Digest()
	s.limit = min(int(m.CellsTotal), d.Len())
	if s.limit <= 0 {
		return r.badDigest(s, errors.New("empty digest"))
	}
	cells, err := digest.ParseCells(m.Cells, s.limit)
	if err != nil {
		return r.badDigest(s, err)
	}
	s.digesting = true
	s.dec = &digest.Decoder{}
	// This side's cells are pinned now, with the first comparison: if the
	// replicas agree, or the digest does not change while they are
	// compared, no copy is made at all.
	s.changes = d.Changes()
	s.view = d.View()
	if err := s.dec.Add(subCells(cells, s.view.Cells(0, len(cells)))); err != nil {
		return r.badDigest(s, err)
	}
	if s.dec.Done() {
		return r.decoded(now, s)
	}
	return r.askMore(now, s)
}

func subCells(remote, local []digest.Cell) []digest.Cell {
	if len(local) < len(remote) {
		// Cannot happen: remote cells are parsed with the limit of this
		// side's digest. Keep the panic out of the node regardless.
		remote = remote[:len(local)]
	}
	out := make([]digest.Cell, len(remote))
	for i := range remote {
		out[i] = remote[i].Sub(local[i])
	}
	return out
}

// askMore asks for a longer prefix (nextPrefix), or falls back to a full
// exchange when the digests have no more cells.
func (r *Reconciler) askMore(now time.Time, s *session) error {
	n := s.dec.Len()
	if n >= s.limit {
		r.stats.FullFallbacks++
		s.digesting = false
		s.view, s.dec = nil, nil
		s.full = true
		return r.startStreams(now, s, nil, nil)
	}
	size, empties := s.dec.EstimateSize()
	count := min(nextPrefix(n, size, empties)-n, s.limit-n, maxCellsPerMessage)
	r.send(s.key.peer, &wire.Envelope{Body: &wire.Envelope_AeMore{AeMore: &wire.AEMore{Session: s.key.id, From: uint32(n), Count: uint32(count)}}})
	return nil
}

// nextPrefix sizes the prefix of cells to ask for next, n being in, from
// the estimate d of the difference's size and how many cells arrived empty
// (digest.Decoder.EstimateSize). The difference decodes from about 1.35
// cells per item, so the aim is 1.35·d plus two standard deviations
// (2·sqrt(d)). With no empty cell yet, d is a lower bound: ask for at
// least twice and at most eight times the prefix. With fewer than 16 empty
// cells the estimate may be far off: at most twice the prefix, and at least
// a quarter more. Then it is good to a few percent: ask for the aim, and
// at least a sixteenth more than now. Against doubling, which overshoots
// by up to 2x, this keeps the digest phase near 1.4 cells per differing
// item, in fewer round trips.
func nextPrefix(n int, d float64, empties int) int {
	n = max(n, 1)
	aim := int(math.Ceil(1.35*d+2*math.Sqrt(d))) + 8
	switch {
	case empties == 0:
		return min(max(aim, 2*n), 8*n)
	case empties < 16:
		return max(min(aim, 2*n), n+max(n/4, 8))
	default:
		return max(aim, n+max(n/16, 8))
	}
}

func (r *Reconciler) onMore(now time.Time, peer string, m *wire.AEMore) error {
	s := r.sessions[sessionKey{peer, m.Session}]
	if s == nil || !s.initiator || !s.digesting {
		return nil // late or duplicate
	}
	from, count := int(m.From), int(m.Count)
	if from >= s.view.Len() || count <= 0 || count > maxCellsPerMessage {
		return r.fail(s, fmt.Errorf("%w: %s asked for cells [%d, +%d) of %d", ErrProtocol, peer, from, count, s.view.Len()))
	}
	end := min(from+count, s.view.Len())
	r.touch(now, s)
	r.stats.CellsSent += uint64(end - from)
	r.send(peer, &wire.Envelope{Body: &wire.Envelope_AeCells{AeCells: &wire.AECells{
		Session: m.Session, From: m.From, Cells: digest.AppendCells(nil, s.view.Cells(from, end)),
	}}})
	return nil
}

func (r *Reconciler) onCells(now time.Time, peer string, m *wire.AECells) error {
	s := r.sessions[sessionKey{peer, m.Session}]
	if s == nil || s.initiator || !s.digesting || int(m.From) != s.dec.Len() {
		return nil // late or duplicate
	}
	n := s.dec.Len()
	cells, err := digest.ParseCells(m.Cells, s.limit-n)
	if err != nil {
		return r.badDigest(s, err)
	}
	if len(cells) == 0 {
		return r.badDigest(s, errors.New("no cells in answer"))
	}
	r.touch(now, s)
	if err := s.dec.Add(subCells(cells, s.view.Cells(n, n+len(cells)))); err != nil {
		return r.badDigest(s, err)
	}
	if s.dec.Done() {
		return r.decoded(now, s)
	}
	return r.askMore(now, s)
}

// decoded turns the decoded difference into the exchange's plan (at the
// responder): for every differing key, the newer side sends its record,
// if the mode lets it and unless it is an expired tombstone the other side
// does not need.
func (r *Reconciler) decoded(now time.Time, s *session) error {
	remote, local := s.dec.Remote(), s.dec.Local()
	s.digesting = false
	s.view, s.dec = nil, nil
	quiet := r.st.Digest().Changes() == s.changes
	byHash := map[uint64][]digest.Item{}
	verified := local[:0]
	for _, it := range local {
		recs, err := r.st.GetByHash(it.KeyHash)
		if err != nil {
			delete(r.sessions, s.key)
			return fmt.Errorf("antientropy: %w", err)
		}
		if !slices.ContainsFunc(recs, func(rec store.Record) bool { return rec.Item() == it }) {
			if quiet {
				// Nothing changed here since the snapshot, so the peer's
				// cells claim records this node never had.
				return r.badDigest(s, fmt.Errorf("decoded a local item %x that is not here", it.KeyHash))
			}
			continue // overwritten since the snapshot
		}
		verified = append(verified, it)
		byHash[it.KeyHash] = append(byHash[it.KeyHash], it)
	}
	local = verified
	remoteHashes := map[uint64][]digest.Item{}
	for _, it := range remote {
		remoteHashes[it.KeyHash] = append(remoteHashes[it.KeyHash], it)
	}
	newest := func(items []digest.Item) uint64 {
		var m uint64
		for _, it := range items {
			m = max(m, it.HLC)
		}
		return m
	}
	var want, push, absent []uint64
	seen, pushed := map[uint64]bool{}, map[uint64]bool{}
	for _, it := range remote {
		h := it.KeyHash
		if seen[h] {
			continue
		}
		seen[h] = true
		mine := byHash[h]
		if len(mine) == 0 && s.recovering {
			absent = append(absent, h)
		}
		switch {
		case !s.push():
		case len(mine) == 0 && it.Tombstone() && r.expired(now, it.HLC):
		case len(mine) == 0 || newest(remoteHashes[h]) >= newest(mine):
			want = append(want, h)
		}
	}
	for _, it := range local {
		h := it.KeyHash
		if pushed[h] || !s.pull() {
			continue
		}
		if seen[h] {
			if newest(byHash[h]) >= newest(remoteHashes[h]) {
				push = append(push, h)
				pushed[h] = true
			}
			continue
		}
		if !(it.Tombstone() && r.expired(now, it.HLC)) {
			push = append(push, h)
			pushed[h] = true
		}
	}
	if len(remote) == 0 && len(local) == 0 {
		r.stats.InSync++
	}
	return r.startStreams(now, s, want, push, absent...)
}

// startStreams sends AEDiff (at the responder) and sets up the streams:
// with s.full, every record in the mode's directions; otherwise the
// initiator's records of want and this side's of push.
func (r *Reconciler) startStreams(now time.Time, s *session, want, push []uint64, absent ...uint64) error {
	diff := &wire.AEDiff{Session: s.key.id, Full: s.full, Want: want, Absent: absent, Records: len(push) > 0}
	if s.full {
		diff.Records = s.pull()
		if s.push() {
			s.in = &inStream{}
		}
		if s.pull() {
			s.out = &outStream{full: true}
		}
	} else {
		if len(want) > 0 {
			s.in = &inStream{}
		}
		if len(push) > 0 {
			s.out = &outStream{hashes: push}
		}
	}
	r.send(s.key.peer, &wire.Envelope{Body: &wire.Envelope_AeDiff{AeDiff: diff}})
	return r.pump(now, s)
}

func (r *Reconciler) onDiff(now time.Time, peer string, m *wire.AEDiff) error {
	s := r.sessions[sessionKey{peer, m.Session}]
	if s == nil || !s.initiator || s.diffed {
		return nil
	}
	s.diffed = true
	cellsSent := 0
	if s.view != nil {
		cellsSent = s.view.Len()
	}
	s.digesting = false
	s.view = nil
	r.touch(now, s)
	if m.Full {
		if !s.full {
			r.stats.FullFallbacks++
		}
		s.full = true
		if s.push() {
			s.out = &outStream{full: true}
		}
		if s.pull() && s.in == nil {
			s.in = &inStream{}
		}
		return r.pump(now, s)
	}
	if s.full {
		return r.fail(s, fmt.Errorf("%w: %s answered a full exchange with a digest difference", ErrProtocol, peer))
	}
	// A decoded difference holds at most about one item per cell.
	if limit := 2*cellsSent + 16; len(m.Want) > limit || len(m.Absent) > limit {
		return r.fail(s, fmt.Errorf("%w: %s decoded %d+%d keys from %d cells", ErrProtocol, peer, len(m.Want), len(m.Absent), cellsSent))
	}
	if len(m.Want) == 0 && len(m.Absent) == 0 && !m.Records {
		r.stats.InSync++
	}
	if s.recovering {
		for _, h := range m.Absent {
			if err := r.dropStale(now, h, nil); err != nil {
				return err
			}
		}
	}
	if len(m.Want) > 0 && s.push() {
		s.out = &outStream{hashes: m.Want}
	}
	if m.Records && s.in == nil {
		s.in = &inStream{}
	}
	return r.pump(now, s)
}

// dropStale removes, at a recovering node, the records of key hash h (or
// of the key only, if key is set) older than the grace period: a peer
// lacks them, so they were deleted and their death certificates collected.
func (r *Reconciler) dropStale(now time.Time, h uint64, key []byte) error {
	recs, err := r.st.GetByHash(h)
	if err != nil {
		return fmt.Errorf("antientropy: %w", err)
	}
	for _, rec := range recs {
		if key != nil && !bytes.Equal(rec.Key, key) {
			continue
		}
		if r.expired(now, rec.Version.HLC) {
			if err := r.st.Remove(rec.Key, rec.Version); err != nil {
				return fmt.Errorf("antientropy: drop stale record %q: %w", rec.Key, err)
			}
			r.stats.Dropped++
		}
	}
	return nil
}

// pump sends chunks of s's outgoing stream while the window allows, then
// ends the session if both streams are done.
func (r *Reconciler) pump(now time.Time, s *session) error {
	o := s.out
	for o != nil && !o.last && o.unacked < max(r.cfg.Window, 1) {
		msg := &wire.AERecords{Session: s.key.id, FromInitiator: s.initiator, Seq: o.seq}
		size := 0
		if o.full {
			msg.Full = true
			msg.After = o.after
			var start []byte
			if o.after != nil {
				start = append(slices.Clip(o.after), 0)
			}
			more := false
			err := r.st.Scan(nil, start, func(rec store.Record) bool {
				if size >= r.cfg.ChunkBytes {
					more = true
					return false
				}
				msg.Records = append(msg.Records, wire.FromStore(rec))
				size += rec.Size()
				o.after = rec.Key
				return true
			})
			if err != nil {
				delete(r.sessions, s.key)
				return fmt.Errorf("antientropy: read records to send: %w", err)
			}
			o.last = !more
		} else {
			for len(o.hashes) > 0 && size < r.cfg.ChunkBytes {
				recs, err := r.st.GetByHash(o.hashes[0])
				if err != nil {
					delete(r.sessions, s.key)
					return fmt.Errorf("antientropy: read records to send: %w", err)
				}
				o.hashes = o.hashes[1:]
				for _, rec := range recs {
					msg.Records = append(msg.Records, wire.FromStore(rec))
					size += rec.Size()
				}
			}
			o.last = len(o.hashes) == 0
		}
		msg.Last = o.last
		o.seq++
		o.unacked++
		r.stats.RecordsSent += uint64(len(msg.Records))
		r.send(s.key.peer, &wire.Envelope{Body: &wire.Envelope_AeRecords{AeRecords: msg}})
	}
	r.finishIfDone(now, s)
	return nil
}

func (r *Reconciler) finishIfDone(now time.Time, s *session) {
	if s.digesting || (s.out != nil && !s.out.done()) || (s.in != nil && !s.in.done) {
		return
	}
	if _, ok := r.sessions[s.key]; !ok {
		return
	}
	delete(r.sessions, s.key)
	r.lastSync = now
	if !s.initiator {
		r.stats.Served++
		return
	}
	r.stats.Completed++
	if s.recovering && r.recovering {
		r.recovering = false
		r.stats.Recovered++
	}
}

func (r *Reconciler) onRecords(now time.Time, peer string, m *wire.AERecords) error {
	s := r.sessions[sessionKey{peer, m.Session}]
	if s != nil && s.initiator && !s.diffed && s.in == nil && !m.FromInitiator {
		// The responder streams only after its AEDiff, which the network
		// delivered late: take the records now.
		s.in = &inStream{}
	}
	// A stream from the initiator goes to the responder and back.
	if s == nil || m.FromInitiator == s.initiator || s.in == nil || s.in.done {
		return nil
	}
	in := s.in
	if m.Seq < in.next {
		return nil // duplicate
	}
	r.touch(now, s)
	if m.Seq > in.next {
		if m.Seq-in.next > uint32(2*max(r.cfg.Window, 1)) {
			return r.fail(s, fmt.Errorf("%w: %s sent chunk %d while %d was due", ErrProtocol, peer, m.Seq, in.next))
		}
		if in.buf == nil {
			in.buf = map[uint32]*wire.AERecords{}
		}
		in.buf[m.Seq] = m
		return nil
	}
	for m != nil {
		if err := r.receive(now, s, m); err != nil {
			delete(r.sessions, s.key)
			return err
		}
		in.next++
		if m.Last {
			in.done = true
			break
		}
		m = in.buf[in.next]
		delete(in.buf, in.next)
	}
	r.finishIfDone(now, s)
	return nil
}

// receive merges one chunk and acknowledges it. A recovering initiator
// in a full exchange also drops its stale records in the key range the
// chunk covers that the peer did not send.
func (r *Reconciler) receive(now time.Time, s *session, m *wire.AERecords) error {
	r.stats.RecordsRecv += uint64(len(m.Records))
	changed, err := r.merge(now, s.key.peer, m.Records)
	if err != nil {
		return err
	}
	r.stats.Repaired += uint64(len(changed))
	if s.initiator && s.recovering && m.Full {
		if err := r.dropUnsent(now, m); err != nil {
			return err
		}
	}
	r.send(s.key.peer, &wire.Envelope{Body: &wire.Envelope_AeAck{AeAck: &wire.AEAck{Session: s.key.id, FromInitiator: m.FromInitiator, Seq: m.Seq}}})
	return nil
}

// dropUnsent removes the stale records in the key range of a full-stream
// chunk (after m.After, up to its last key, or to the end for the last
// chunk) that the chunk does not hold.
func (r *Reconciler) dropUnsent(now time.Time, m *wire.AERecords) error {
	sent := map[string]bool{}
	var hi []byte
	for _, w := range m.Records {
		sent[string(w.Key)] = true
		if bytes.Compare(w.Key, hi) > 0 {
			hi = w.Key
		}
	}
	var start []byte
	if len(m.After) > 0 {
		start = append(slices.Clip(m.After), 0)
	}
	var stale []store.Record
	err := r.st.Scan(nil, start, func(rec store.Record) bool {
		if !m.Last && bytes.Compare(rec.Key, hi) > 0 {
			return false
		}
		if !sent[string(rec.Key)] && r.expired(now, rec.Version.HLC) {
			stale = append(stale, rec)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("antientropy: scan for stale records: %w", err)
	}
	for _, rec := range stale {
		if err := r.st.Remove(rec.Key, rec.Version); err != nil {
			return fmt.Errorf("antientropy: drop stale record %q: %w", rec.Key, err)
		}
		r.stats.Dropped++
	}
	return nil
}

// touch notes progress in s: the peer answered.
func (r *Reconciler) touch(now time.Time, s *session) {
	s.answered = true
	s.deadline = now.Add(r.cfg.Timeout)
}

func (r *Reconciler) onAck(now time.Time, peer string, m *wire.AEAck) error {
	s := r.sessions[sessionKey{peer, m.Session}]
	if s == nil || m.FromInitiator != s.initiator || s.out == nil || s.out.unacked == 0 {
		return nil
	}
	s.out.unacked--
	r.touch(now, s)
	return r.pump(now, s)
}

// earliest returns the earlier of two deadlines, the zero time meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
