// Package engine is hearsay's protocol core: a deterministic state machine
// per node that composes the replication mechanisms over one membership
// view and one store.
//
// The engine is sans-IO, in the shape of etcd's raft RawNode. It never reads
// the clock, sleeps, starts a goroutine or opens a socket. The caller hands
// in the time with every input, a seeded random source at construction, and
// received envelopes; the engine applies records to the store it was given
// (visible at once, durable only when the caller syncs) and queues what must
// happen next in a Ready value: messages to send, changes to announce to
// watchers, membership events.
//
// The caller's contract, kept by both drivers (the runtime in package
// hearsay and the simulator in package sim):
//
//  1. feed inputs (Write, Step, Join, Leave) and call Tick whenever Deadline
//     has passed and after every batch of inputs;
//  2. take Ready; send the messages not marked AfterSync at once; make the
//     store durable (Store.Sync), and only then send the others, tell the
//     watchers and acknowledge the writes, so that nothing is announced or
//     acknowledged that a crash could lose.
package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/engine/directmail"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/engine/plumtree"
	"github.com/hearsaydb/hearsay/engine/rumor"
	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/internal/hlc"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// Errors returned by Step for envelopes the engine refuses.
var (
	ErrForeignCluster = errors.New("engine: envelope from another cluster")
	ErrAnonymous      = errors.New("engine: envelope without sender name")
	ErrBadRecord      = errors.New("engine: refused record")
	// ErrClockOffset is returned by Write while this node's clock is
	// further from the cluster's than Config.MaxClockOffset, or before the
	// offset has been measured.
	ErrClockOffset = errors.New("engine: clock offset")
)

// Message is an envelope to deliver to a gossip address.
type Message struct {
	To  string
	Env *wire.Envelope
	// AfterSync is true when the message carries records or acknowledges
	// received ones (mail, rumors, anti-entropy records, and their acks),
	// or claims to hold them (plumtree announcements, which peers graft):
	// it may concern records applied since the last sync, so it leaves
	// only once the store is synced. The others (membership probes, acks
	// and gossip, joins, digests, requests) depend on nothing durable and
	// leave at once, so a slow disk never delays failure detection.
	AfterSync bool
}

// afterSync reports whether env must wait for the store's sync.
func afterSync(env *wire.Envelope) bool {
	switch env.Body.(type) {
	case *wire.Envelope_Mail, *wire.Envelope_MailAck, *wire.Envelope_MailAcks, *wire.Envelope_Rumor, *wire.Envelope_RumorAck,
		*wire.Envelope_AeRecords, *wire.Envelope_AeAck, *wire.Envelope_PlumGossip, *wire.Envelope_PlumIhave:
		return true
	}
	return false
}

// Ready is what the engine asks its driver to do, collected since the last
// call to Engine.Ready.
type Ready struct {
	// Messages are to be sent: those marked AfterSync once the store is
	// synced, the others at once.
	Messages []Message
	// Changes are records that changed the store (local writes and merged
	// remote records), to announce to watchers, in the order they were
	// applied, each with the revision the store gave it (Record.Revision).
	Changes []store.Record
	// MemberEvents are changes in the membership view.
	MemberEvents []membership.Event
	// Quarantine lists peers put in or released from quarantine, to log.
	Quarantine []trust.Change
	// Spread are members' answers to this node's spread queries
	// (QuerySpread).
	Spread []SpreadReply
}

// Stats counts what the engine did.
type Stats struct {
	Received       uint64 // envelopes stepped
	Refused        uint64 // envelopes refused (foreign cluster, no sender)
	RecordsRefused uint64 // received records refused (size, clock skew, signature)
	// Of RecordsRefused, those refused for a signature that is missing or
	// does not verify (SigRefused) and those whose origin's certificate
	// was not held yet (UnknownSigner; the certificate is asked for).
	SigRefused    uint64
	UnknownSigner uint64
	// RevokedRefused counts records refused because their origin's
	// certificate was revoked before their version.
	RevokedRefused uint64
	CertsRefused   uint64 // node certificates that did not verify
	CertsEvicted   uint64 // certificates forgotten for the cache bound
	CertsAsked     uint64 // certificates asked of peers
	// SigSkipped counts received records not verified because they would
	// not change the store (held already, or older than what is held).
	SigSkipped uint64
	// Membership claims dropped in a certificate cluster: unsigned, signed
	// by a node whose certificate was not held yet, or with a signature
	// that does not verify.
	ClaimsUnsigned, ClaimsUnknown, ClaimsRefused uint64
	Certs                                        int // node certificates held
	// Offences counts, by kind, what peers sent that did not check out
	// (see reportOffence), shared between snapshots: read, do not modify.
	Offences        map[string]uint64
	RecordsReceived uint64 // records received by any mechanism
	RecordsApplied  uint64 // of those, records that changed the store
	LocalWrites     uint64
	ClockSteps      uint64 // jumps of this node's wall clock detected
	Mail            directmail.Stats
	Rumor           rumor.Stats
	Tree            plumtree.Stats
	AntiEntropy     antientropy.Stats
	Members         membership.Stats
	Trust           TrustStats
}

// Engine is one node's protocol state. It is not safe for concurrent use:
// one driver goroutine owns it.
type Engine struct {
	cfg     Config
	st      store.Store
	rng     *rand.Rand
	clock   hlc.Clock
	members *membership.Membership
	view    View // membership's, or Config.View
	mail    *directmail.Mailer
	monger  *rumor.Monger
	tree    *plumtree.Tree
	ae      *antientropy.Reconciler
	trust   *trust.Scores

	trustAt     time.Time // next sweep of the scores
	trustStats  TrustStats
	stallStreak map[string]int // anti-entropy exchanges stalled in a row, per peer
	limits      *limiter       // per-peer rate limits of requests

	fresh []store.Record // local writes not yet mailed
	// freshSince is when the oldest of fresh was written: the mail window
	// (Config.DirectMailWindow) closes at freshSince+window.
	freshSince time.Time
	arrived    arrivals // how recent changes arrived, for spread queries
	ready      Ready
	stats      Stats

	viewDirty   bool      // the member list changed since it was saved
	viewSavedAt time.Time // when it was last saved

	wallOffset     time.Duration // wall clock minus timer clock (see SetWallOffset)
	lastWall       time.Time     // wall reading at the last check (no monotonic part)
	lastNow        time.Time     // timer clock at the last check
	clockErr       error         // why local writes are refused for the clock, nil if not
	clockOffset    time.Duration
	clockPeers     int       // peers the offset is the median of
	clockCheckedAt time.Time // when clockErr was last computed
	clockSampleAt  time.Time // the last clock sample clockErr has seen
	clockOff       bool      // not trusted: measured off, outvoted or stepped since the last good measurement (persisted)
	// refusedFuture remembers records refused for a version beyond the
	// skew bound, so that the same record is still refused when time has
	// caught up with it: it was written by a clock that was wrong, and
	// would overwrite writes acknowledged after it. Bounded, oldest first
	// out.
	refusedFuture map[refusedRecord]struct{}
	refusedOrder  []refusedRecord

	// Certificate cluster (Config.Signer, signing.go): verified node
	// certificates by node id, bounded by Config.MaxCerts, first learned
	// first out; their hashes, to skip verifying one held; and when each
	// missing one was last asked for.
	certs     map[uint64]*certEntry
	certOrder []uint64
	certSums  map[[sha256.Size]byte]uint64
	certAsked map[uint64]time.Time
}

// refusedRecord identifies a record refused for its future version.
type refusedRecord struct {
	key     string
	version store.Version
}

// maxRefusedFuture bounds Engine.refusedFuture.
const maxRefusedFuture = 1 << 16

// clockRecheck bounds how stale the clock verdict used by Write may be.
const clockRecheck = 100 * time.Millisecond

const (
	metaIncarnation = "incarnation"
	metaClock       = "hlc"
	// metaClockOff is 1 while this node's clock was last measured beyond
	// MaxClockOffset.
	metaClockOff = "clock-off"
	// metaMembers keeps the member list (a wire.JoinReply), so that a
	// restarted node can rejoin through the members it knew.
	metaMembers = "members"
	// membersSaveInterval bounds how often the member list is written.
	membersSaveInterval = time.Second
)

// New returns an engine over st. It reloads what the store keeps of an
// earlier run (incarnation, clock high-water mark, outboxes) and starts at
// a higher incarnation, so that the cluster takes the restarted node's word
// over any old suspicion of it.
func New(cfg Config, st store.Store, rng *rand.Rand, now time.Time) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, st: st, rng: rng}
	if err := e.initCerts(now); err != nil {
		return nil, err
	}
	inc, err := e.metaUint(metaIncarnation)
	if err != nil {
		return nil, err
	}
	last, err := e.metaUint(metaClock)
	if err != nil {
		return nil, err
	}
	e.clock.Observe(last)
	off, err := e.metaUint(metaClockOff)
	if err != nil {
		return nil, err
	}
	e.clockOff = off == 1
	inc++
	if err := e.setMetaUint(metaIncarnation, inc); err != nil {
		return nil, err
	}
	self := membership.Member{Name: cfg.Name, Addr: cfg.Addr, NodeID: cfg.NodeID, Incarnation: inc, Since: now}
	e.members = membership.New(cfg.Membership, self, rng, e.sendAddr)
	e.members.SetSettings(e.settings())
	if e.signing() {
		e.members.SetSigner(e.signMember)
	}
	if known, err := e.loadMembers(); err != nil {
		return nil, err
	} else if len(known) > 0 {
		e.members.Rejoin(now, known)
	}
	e.mail, err = directmail.New(cfg.Mail, st, rng, e.sendPeer)
	if err != nil {
		return nil, err
	}
	e.initTrust()
	e.view = cfg.View
	if e.view == nil {
		e.view = memberView{e.members}
	}
	sample := rumor.Sampler(e.view.Sample)
	e.monger = rumor.New(cfg.Rumor, st, rng, now, sample, e.sendPeer)
	e.tree = plumtree.New(cfg.Tree, st, rng, plumtree.Sampler(sample), e.sendPeer)
	if err := e.initAE(now, sample); err != nil {
		return nil, err
	}
	if !e.ae.Serving() {
		// Back from longer than the tombstone grace period: mail queued
		// before the absence may carry records deleted since, whose death
		// certificates are gone. Sending them would bring them back.
		e.mail.DropAll()
	}
	return e, nil
}

// settings are what every member of the cluster must share (see
// membership.CompareSettings).
func (e *Engine) settings() *wire.Settings {
	return &wire.Settings{
		Protocol:         wire.ProtocolVersion,
		MaxValueSize:     uint64(e.cfg.MaxValueSize),
		TombstoneGraceMs: uint64(e.cfg.AE.TombstoneGrace.Milliseconds()),
		Signing:          e.signingName(),
	}
}

// signingName is how this node's records are signed, in its Settings.
func (e *Engine) signingName() string {
	if e.signing() {
		return SigningEd25519
	}
	return "none"
}

// loadMembers returns the gossip addresses of the members saved by an
// earlier run. A saved list that does not decode is ignored: it only
// speeds up rejoining, and the seeds still work.
func (e *Engine) loadMembers() ([]string, error) {
	v, ok, err := e.st.GetMeta([]byte(metaMembers))
	if err != nil {
		return nil, fmt.Errorf("engine: read %s: %w", metaMembers, err)
	}
	var saved wire.JoinReply
	if !ok || proto.Unmarshal(v, &saved) != nil {
		return nil, nil
	}
	var addrs []string
	for _, m := range saved.Members {
		if m.GetName() != e.cfg.Name && m.GetAddress() != "" && m.GetAddress() != e.cfg.Addr {
			addrs = append(addrs, m.GetAddress())
		}
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}

// saveMembers writes the member list to store metadata, at most once per
// membersSaveInterval, in the driver's next commit.
func (e *Engine) saveMembers(now time.Time) error {
	if !e.viewDirty || now.Before(e.viewSavedAt.Add(membersSaveInterval)) {
		return nil
	}
	var saved wire.JoinReply
	for _, m := range e.members.Members() {
		if m.Name != e.cfg.Name && m.Addr != "" {
			saved.Members = append(saved.Members, &wire.Member{Name: m.Name, Address: m.Addr, Incarnation: m.Incarnation, State: m.State, NodeId: m.NodeID})
		}
	}
	b, err := proto.Marshal(&saved)
	if err != nil {
		return fmt.Errorf("engine: encode member list: %w", err)
	}
	if err := e.st.SetMeta([]byte(metaMembers), b); err != nil {
		return fmt.Errorf("engine: write %s: %w", metaMembers, err)
	}
	e.viewDirty, e.viewSavedAt = false, now
	return nil
}

func (e *Engine) metaUint(key string) (uint64, error) {
	v, ok, err := e.st.GetMeta([]byte(key))
	if err != nil {
		return 0, fmt.Errorf("engine: read %s: %w", key, err)
	}
	if !ok {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("engine: corrupt %s: %d bytes", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (e *Engine) setMetaUint(key string, x uint64) error {
	if err := e.st.SetMeta([]byte(key), binary.BigEndian.AppendUint64(nil, x)); err != nil {
		return fmt.Errorf("engine: write %s: %w", key, err)
	}
	return nil
}

// sendAddr queues env for addr, filling in the sender and piggybacking
// membership updates.
func (e *Engine) sendAddr(addr string, env *wire.Envelope) {
	env.Protocol = wire.ProtocolVersion
	env.Cluster = e.cfg.Cluster
	env.From = e.cfg.Name
	if e.signing() || !replicationBody(env) {
		env.FromAddr = e.cfg.Addr
		env.FromId = e.cfg.NodeID
	}
	if e.signing() {
		e.attachCerts(env)
	}
	e.view.Piggyback(env)
	e.ready.Messages = append(e.ready.Messages, Message{To: addr, Env: env, AfterSync: afterSync(env)})
}

// replicationBody reports whether env is direct mail, a rumor, a fetch or
// an acknowledgement of one of them: messages sent only to members (by
// name, from the member view), which in an unsigned cluster leave the
// sender's address and node id out. They were 28 of the ~150 bytes of a
// mail of one 64-byte record, and as much again in its acknowledgement
// (issue 14). A receiver still learns both from the sender's membership
// messages; until then, one that does not know the sender cannot answer
// it, and the mail is retried from the outbox, the rumor pushed again.
// A certificate cluster keeps them: the transport binds a sender's
// certificate to its address.
func replicationBody(env *wire.Envelope) bool {
	switch env.Body.(type) {
	case *wire.Envelope_Mail, *wire.Envelope_MailAck, *wire.Envelope_MailAcks,
		*wire.Envelope_Rumor, *wire.Envelope_RumorAck, *wire.Envelope_Fetch:
		return true
	}
	return false
}

// sendPeer queues env for the named member; false if its address is unknown.
func (e *Engine) sendPeer(name string, env *wire.Envelope) bool {
	addr, ok := e.view.Addr(name)
	if !ok {
		return false
	}
	e.sendAddr(addr, env)
	return true
}

// Write makes a local write: a new version for key, applied to the store
// and handed to the replication mechanisms. A delete is a write with
// tombstone set and no value.
func (e *Engine) Write(now time.Time, key, value []byte, tombstone bool) (store.Record, error) {
	recs, errs := e.WriteBatch(now, []WriteOp{{Key: key, Value: value, Tombstone: tombstone}})
	return recs[0], errs[0]
}

// WriteOp is one local write of a WriteBatch.
type WriteOp struct {
	Key, Value []byte
	Tombstone  bool
}

// WriteBatch makes several local writes at once, as Write does each, and
// returns for each its record or why it was refused. The versions are
// issued in order; in a certificate cluster the records are signed
// together (BatchSigner, when the Signer is one, may sign them in
// parallel) and all are applied to the store in one call. A store failure
// refuses every write of the batch.
func (e *Engine) WriteBatch(now time.Time, ops []WriteOp) ([]store.Record, []error) {
	recs := make([]store.Record, len(ops))
	errs := make([]error, len(ops))
	ok := make([]int, 0, len(ops))
	for i, op := range ops {
		value := op.Value
		if op.Tombstone {
			value = nil
		}
		rec := store.Record{Key: op.Key, Value: value, Tombstone: op.Tombstone}
		if err := store.Check(rec, e.cfg.MaxValueSize); err != nil {
			errs[i] = err
			continue
		}
		if err := e.checkReserved(now, rec); err != nil {
			errs[i] = err
			continue
		}
		if err := e.checkClock(now); err != nil {
			errs[i] = err
			continue
		}
		rec.Version = store.Version{HLC: e.clock.Now(e.wall(now)), Node: e.cfg.NodeID}
		recs[i] = rec
		ok = append(ok, i)
	}
	if len(ok) == 0 {
		return recs, errs
	}
	good := make([]store.Record, len(ok))
	for k, i := range ok {
		good[k] = recs[i]
	}
	e.signAll(good)
	fail := func(err error) ([]store.Record, []error) {
		for _, i := range ok {
			recs[i], errs[i] = store.Record{}, err
		}
		return recs, errs
	}
	// Persist the clock's high-water mark with the writes, once per batch,
	// so that a restart with a clock set back still issues newer versions
	// than before. It is set before the apply: a store that holds metadata
	// for its next commit (pebblestore) writes it in the batch's own, so
	// the mark costs no commit and is durable with the records it covers.
	if err := e.setMetaUint(metaClock, good[len(good)-1].Version.HLC); err != nil {
		return fail(err)
	}
	if _, err := e.st.Apply(good); err != nil {
		return fail(fmt.Errorf("engine: apply local write: %w", err))
	}
	for k, i := range ok {
		rec := good[k]
		recs[i] = rec
		e.stats.LocalWrites++
		e.ready.Changes = append(e.ready.Changes, rec)
		e.arrived.note(rec.Key, rec.Version, ViaLocal)
		if e.cfg.DirectMail {
			if len(e.fresh) == 0 {
				e.freshSince = now
			}
			e.fresh = append(e.fresh, rec)
		}
		if e.cfg.RumorMongering {
			e.monger.Add(now, rec)
		}
		if e.cfg.Plumtree {
			e.tree.Add(now, rec)
		}
	}
	return recs, errs
}

// Step processes one envelope received from the network. A non-nil error
// says what was refused; the engine state stays consistent either way.
func (e *Engine) Step(now time.Time, env *wire.Envelope) error {
	if env.Cluster != e.cfg.Cluster {
		e.stats.Refused++
		e.refuseForeign(env)
		return fmt.Errorf("%w: %q (this node: %q), sender %q", ErrForeignCluster, env.Cluster, e.cfg.Cluster, env.From)
	}
	if env.From == "" {
		e.stats.Refused++
		return ErrAnonymous
	}
	if env.From == e.cfg.Name {
		return nil // our own message, looped back
	}
	if e.members.IsRevoked(env.From) {
		e.stats.Refused++
		return fmt.Errorf("%w: %q", ErrRevoked, env.From)
	}
	if e.cfg.MaxClockOffset > 0 && e.wallStepped(now) {
		// Before the envelope's clock sample, if it carries one, is taken.
		e.clockCheckedAt = time.Time{}
	}
	if e.quarantined(now, env.From) {
		e.trustStats.Dropped++
		return fmt.Errorf("%w: %q", ErrQuarantined, env.From)
	}
	e.stats.Received++
	defer e.drainMemberEvents()
	var certErr error
	if !e.signing() {
		stripClaimSigs(env) // an unsigned cluster keeps none
	} else {
		certErr = e.takeMemberCerts(now, env)
		e.checkClaims(now, env)
		if env.FromId != 0 && e.certs[env.FromId] == nil && env.GetCertReply() == nil {
			// A member whose certificate is not held yet, heard from
			// first-hand: ask it for its own before its records come.
			e.askCerts(now, env.From, []uint64{env.FromId})
		}
	}
	answered := e.members.Answered()
	handled, err := e.view.Handle(now, env)
	if err != nil {
		return err
	}
	if handled && certErr != nil {
		return certErr
	}
	if handled {
		e.mail.Contact(now, env.From)
		if !answered && e.members.Answered() && env.GetJoinReply() != nil && e.cfg.AntiEntropy {
			// A joiner reconciles with the seed that admitted it at
			// once, rather than an anti-entropy interval later: it
			// catches up before the cluster's next writes build on
			// what it lacks.
			e.ae.Start(now, env.From)
		}
		return nil
	}
	e.mail.Contact(now, env.From)
	e.heardData(env.From)
	switch b := env.Body.(type) {
	case *wire.Envelope_Mail:
		changed, refused, err := e.merge(now, env.From, b.Mail.Records)
		if err != nil {
			return err // not acknowledged: the sender retries
		}
		e.noteArrivals(b.Mail.Records, changed, ViaDirectMail)
		if errors.Is(refused, errUnknownOrig) {
			// Not acknowledged either: the origin's certificate has been
			// asked for, and the retry will verify.
			return refused
		}
		if e.cfg.Mail.AckDelay > 0 {
			e.mail.Acknowledge(now, env.From, env.FromAddr, b.Mail.Id)
		} else {
			e.sendPeerOrAddr(env, &wire.Envelope{Body: &wire.Envelope_MailAck{MailAck: &wire.MailAck{Id: b.Mail.Id}}})
		}
		return refused
	case *wire.Envelope_MailAck:
		e.mail.Ack(now, env.From, b.MailAck.Id)
	case *wire.Envelope_MailAcks:
		for _, id := range b.MailAcks.Ids {
			e.mail.Ack(now, env.From, id)
		}
	case *wire.Envelope_Rumor:
		return e.stepRumor(now, env, b.Rumor)
	case *wire.Envelope_RumorAck:
		e.monger.Feedback(b.RumorAck.Id, b.RumorAck.Known)
	case *wire.Envelope_RumorPull:
		if err := e.allow(now, env.From, limRumorPull); err != nil {
			return err
		}
		if e.cfg.RumorMongering {
			return e.monger.Pulled(now, env.From)
		}
	case *wire.Envelope_Fetch:
		if err := e.allow(now, env.From, limFetch); err != nil {
			return err
		}
		return e.monger.Fetch(now, env.From, b.Fetch.Keys)
	case *wire.Envelope_CertRequest:
		e.answerCerts(env, b.CertRequest)
	case *wire.Envelope_CertReply:
		return e.takeCerts(now, env.From, b.CertReply.Certs)
	case *wire.Envelope_AeStart, *wire.Envelope_AeMore, *wire.Envelope_AeCells, *wire.Envelope_AeDiff,
		*wire.Envelope_AeRecords, *wire.Envelope_AeAck, *wire.Envelope_AeError:
		if env.GetAeStart() != nil {
			if err := e.allow(now, env.From, limAEStart); err != nil {
				return err
			}
		}
		return e.stepAE(now, env)
	case *wire.Envelope_SpreadQuery, *wire.Envelope_SpreadReply:
		return e.stepSpread(env)
	case *wire.Envelope_PlumGossip, *wire.Envelope_PlumIhave, *wire.Envelope_PlumPrune, *wire.Envelope_PlumGraft:
		return e.stepTree(now, env)
	}
	return nil
}

// stepRumor merges a rumor message. Updates new to this node make it
// infective in turn; under the feedback rule it answers which it knew.
func (e *Engine) stepRumor(now time.Time, env *wire.Envelope, r *wire.Rumor) error {
	changed, refused, err := e.merge(now, env.From, r.Records)
	if err != nil {
		return err
	}
	e.noteArrivals(r.Records, changed, ViaRumor)
	known := make([]uint32, 0, len(r.Records)+len(r.Announces))
	for i, c := range changed {
		if e.signing() && !c && e.certs[r.Records[i].Node] == nil {
			// Refused until the origin's certificate comes: not known,
			// so that the sender keeps the rumor hot.
			continue
		}
		e.monger.Received(r.Records[i].Key, store.Version{HLC: r.Records[i].Hlc, Node: r.Records[i].Node})
		if !c {
			known = append(known, uint32(i))
		} else if e.cfg.RumorMongering {
			e.monger.Add(now, r.Records[i].Store())
		}
	}
	var wants []rumor.Want
	for i, a := range r.Announces {
		v := store.Version{HLC: a.Hlc, Node: a.Node}
		cur, ok, err := e.st.Get(a.Key)
		if err != nil {
			return fmt.Errorf("engine: read %q for announcement: %w", a.Key, err)
		}
		if ok && cur.Version.Compare(v) >= 0 {
			known = append(known, uint32(len(r.Records)+i))
			continue
		}
		if len(a.Key) > 0 && len(a.Key) <= store.MaxKeySize {
			wants = append(wants, rumor.Want{Key: a.Key, Version: v})
		}
	}
	e.monger.Announced(now, env.From, wants)
	if r.Feedback && r.Id != 0 {
		e.sendPeerOrAddr(env, &wire.Envelope{Body: &wire.Envelope_RumorAck{RumorAck: &wire.RumorAck{Id: r.Id, Known: known}}})
	}
	return refused
}

// refuseForeign answers a Join from another cluster with the reason, and
// records a refusal of this node's own join, so that both sides can say
// what is wrong instead of waiting in silence.
func (e *Engine) refuseForeign(env *wire.Envelope) {
	switch b := env.Body.(type) {
	case *wire.Envelope_Join:
		if env.FromAddr != "" {
			e.sendAddr(env.FromAddr, &wire.Envelope{Body: &wire.Envelope_JoinReply{JoinReply: &wire.JoinReply{
				Refused: fmt.Sprintf("it belongs to cluster %q, the joiner to cluster %q (--cluster)", e.cfg.Cluster, env.Cluster),
			}}})
		}
	case *wire.Envelope_JoinReply:
		reason := b.JoinReply.Refused
		if reason == "" {
			reason = fmt.Sprintf("it belongs to cluster %q, this node to %q (--cluster)", env.Cluster, e.cfg.Cluster)
		}
		e.members.JoinRefused(env.From, env.FromAddr, reason)
	}
}

func (e *Engine) sendPeerOrAddr(from *wire.Envelope, env *wire.Envelope) {
	if !e.sendPeer(from.From, env) && from.FromAddr != "" {
		e.sendAddr(from.FromAddr, env)
	}
}

// merge validates received records and applies them last-writer-wins. It
// reports, for each, whether it changed the store (refused records did
// not), an error describing refused records (the rest are applied) and,
// separately, a store failure. Every received record comes through here,
// whatever mechanism carried it (mail, rumor, fetch, anti-entropy): size
// limits, the clock-skew bound and, in a certificate cluster, the
// origin's signature are checked before anything is merged. from is the
// peer that sent the records.
//
// Records that an honest peer would never send are scored against from
// (see package trust): one offence per kind and call, whatever the number
// of records.
func (e *Engine) merge(now time.Time, from string, ws []*wire.Record) (changed []bool, refused error, err error) {
	var invalid, future bool
	defer func() {
		if invalid {
			e.reportOffence(now, from, trust.InvalidRecord)
		}
		if future {
			e.reportOffence(now, from, trust.FutureVersion)
		}
	}()
	changed = make([]bool, len(ws))
	var unknown []uint64
	sigBad := false
	defer func() {
		if sigBad {
			e.reportOffence(now, from, OffenceSignature)
		}
		if len(unknown) > 0 && from != "" {
			e.askCerts(now, from, unknown)
		}
	}()
	recs := make([]store.Record, 0, len(ws))
	idx := make([]int, 0, len(ws))
	limit := hlc.Pack(uint64(max(e.wall(now).Add(e.cfg.MaxClockSkew).UnixMilli(), 0)), 0)
	for i, w := range ws {
		r := w.Store()
		e.stats.RecordsReceived++
		if r.Tombstone && len(r.Value) > 0 {
			r.Value = nil
		}
		if !e.signing() {
			r.Sig = nil // an unsigned cluster keeps none
		}
		err := store.Check(r, e.cfg.MaxValueSize)
		invalid = invalid || err != nil
		if err == nil && e.signing() {
			if cur, ok, gerr := e.st.Get(r.Key); gerr == nil && ok && !r.Wins(cur) {
				// It would change nothing: the same write again (mail,
				// rumors and anti-entropy bring each record several times)
				// or an older one. A read costs far less than verifying.
				e.stats.SigSkipped++
				e.treeReceived(r.Key, r.Version)
				continue
			}
			// Before the clock-skew check, which remembers what it refuses:
			// a forger must not be able to make a genuine version refused.
			if err = e.verify(r, &unknown); err != nil {
				switch {
				case errors.Is(err, errUnknownOrig):
					e.stats.UnknownSigner++
				case errors.Is(err, errRevokedOrig):
					// Not the relay's fault: it may not know of the
					// revocation yet.
					e.stats.RevokedRefused++
				default:
					e.stats.SigRefused++
					sigBad = true
				}
			}
		}
		if err == nil && (r.Version.HLC > limit || r.Version.IsZero()) {
			err = fmt.Errorf("version %v (%v) is beyond this node's clock plus %v", r.Version,
				hlc.Time(r.Version.HLC).UTC().Format(time.RFC3339Nano), e.cfg.MaxClockSkew)
			// Remembered only when this node trusts its own clock: a
			// record that looks future to a clock known to be behind (or
			// not measured yet) would be refused forever after the clock
			// is set right, and the replicas would never converge.
			if e.checkClock(now) == nil {
				e.rememberFuture(r)
				// Only a clock this node trusts judges the sender.
				future = future || !r.Version.IsZero()
				invalid = invalid || r.Version.IsZero()
			}
		} else if err == nil && e.refusedBefore(r) {
			err = fmt.Errorf("version %v was refused earlier as beyond the clock skew bound", r.Version)
		}
		if err == nil {
			err = e.checkReserved(now, r)
		}
		if err != nil {
			e.stats.RecordsRefused++
			if refused == nil || (errors.Is(err, errUnknownOrig) && !errors.Is(refused, errUnknownOrig)) {
				// An unknown origin is reported first: the callers hold
				// back their acknowledgements for it.
				refused = fmt.Errorf("%w: key %.64q: %w", ErrBadRecord, r.Key, err)
			}
			continue
		}
		e.clock.Observe(r.Version.HLC)
		recs = append(recs, r)
		idx = append(idx, i)
	}
	if len(recs) == 0 {
		return changed, refused, nil
	}
	applied, err := e.st.Apply(recs)
	if err != nil {
		return nil, nil, fmt.Errorf("engine: apply received records: %w", err)
	}
	for i, c := range applied {
		e.treeReceived(recs[i].Key, recs[i].Version)
		if c {
			changed[idx[i]] = true
			e.stats.RecordsApplied++
			e.ready.Changes = append(e.ready.Changes, recs[i])
		}
	}
	return changed, refused, nil
}

func (e *Engine) rememberFuture(r store.Record) {
	if e.refusedFuture == nil {
		e.refusedFuture = map[refusedRecord]struct{}{}
	}
	k := refusedRecord{key: string(r.Key), version: r.Version}
	if _, ok := e.refusedFuture[k]; ok {
		return
	}
	if len(e.refusedOrder) >= maxRefusedFuture {
		delete(e.refusedFuture, e.refusedOrder[0])
		e.refusedOrder = e.refusedOrder[1:]
	}
	e.refusedFuture[k] = struct{}{}
	e.refusedOrder = append(e.refusedOrder, k)
}

func (e *Engine) refusedBefore(r store.Record) bool {
	if len(e.refusedFuture) == 0 {
		return false
	}
	_, ok := e.refusedFuture[refusedRecord{key: string(r.Key), version: r.Version}]
	return ok
}

// checkClock returns ErrClockOffset, with the measured offset and the
// bound, while this node's clock is too far from the cluster's to write:
// its offset to the median of its peers exceeds MaxClockOffset, or no
// strict majority of itself and the peers it measured agree within it; it
// has live peers, or is rejoining remembered ones, but no measurement yet;
// it was measured off, or its wall clock stepped, and no peer has measured
// it since; or its clock's high-water mark,
// persisted by an earlier run, is beyond the wall clock by more than the
// bound (its versions would be refused by every peer). The verdict is
// recomputed at most every clockRecheck.
func (e *Engine) checkClock(now time.Time) error {
	if e.cfg.MaxClockOffset <= 0 {
		return nil
	}
	if e.wallStepped(now) {
		e.clockCheckedAt = time.Time{}
	}
	if at := e.members.LastClockSample(); !at.Equal(e.clockSampleAt) {
		// A new measurement: judge again at once, so that a node's first
		// sample lets it write within a round trip.
		e.clockSampleAt, e.clockCheckedAt = at, time.Time{}
	}
	if !e.clockCheckedAt.IsZero() && now.Sub(e.clockCheckedAt) < clockRecheck && now.After(e.clockCheckedAt) {
		return e.clockErr
	}
	e.clockCheckedAt = now
	e.clockOffset, e.clockPeers = e.members.ClockOffset(now)
	bound := e.cfg.MaxClockOffset
	switch hw, wall := hlc.Time(e.clock.Last()), e.wall(now); {
	case hw.Sub(wall) > bound:
		e.clockErr = fmt.Errorf("%w: this node's clock issued versions up to %s, %v ahead of its wall clock now (more than --max-clock-offset %v): writes are refused until the wall clock passes that time",
			ErrClockOffset, hw.UTC().Format(time.RFC3339), hw.Sub(wall).Round(time.Millisecond), bound)
	case e.clockPeers == 0 && e.members.NumLive() > 1:
		e.clockErr = fmt.Errorf("%w: not measured yet against the %d live peer(s); writes wait for the first probe round trip",
			ErrClockOffset, e.members.NumLive()-1)
	case e.clockPeers == 0 && e.members.Rejoining() > 0:
		// Restarted alone: it belongs to a cluster it cannot see yet, and
		// its clock may have gone wrong while it was down.
		e.clockErr = fmt.Errorf("%w: not measured yet: rejoining the %d member(s) remembered from the last run; writes wait until one answers (--max-clock-offset 0 lifts the check)",
			ErrClockOffset, e.members.Rejoining())
	case e.clockPeers > 0 && e.clockOffset.Abs() <= bound && !e.clockAgrees(now, bound):
		agree, n := e.members.ClockAgreement(now, bound)
		e.clockErr = fmt.Errorf("%w: this node's clock agrees within --max-clock-offset %v with only %d of the %d peer(s) measured (median offset %v): writes are refused until a majority agrees",
			ErrClockOffset, bound, agree, n, e.clockOffset.Round(time.Millisecond))
		e.setClockOff(true)
	case e.clockOffset > bound || e.clockOffset < -bound:
		dir := "ahead of"
		if e.clockOffset < 0 {
			dir = "behind"
		}
		e.clockErr = fmt.Errorf("%w: this node's clock is %v %s the cluster's (median of %d peer(s)), more than --max-clock-offset %v: writes are refused until the clock is corrected",
			ErrClockOffset, e.clockOffset.Abs().Round(time.Millisecond), dir, e.clockPeers, bound)
		e.setClockOff(true)
	case e.clockPeers == 0 && e.clockOff && e.members.KnowsOthers():
		// Measured off, and no peer has measured it since (all gone, cut
		// off, or this node restarted alone): alone, a node cannot tell its
		// clock was fixed, so it keeps refusing until a peer says so.
		e.clockErr = fmt.Errorf("%w: this node's clock was last measured beyond --max-clock-offset %v and no peer has measured it since; writes wait for a peer to measure it again",
			ErrClockOffset, bound)
	default:
		e.clockErr = nil
		if e.clockPeers > 0 {
			e.setClockOff(false)
		}
	}
	return e.clockErr
}

// clockAgrees reports whether a strict majority of this node and the peers
// it measured have clocks within bound of its own.
func (e *Engine) clockAgrees(now time.Time, bound time.Duration) bool {
	agree, n := e.members.ClockAgreement(now, bound)
	return 2*(agree+1) > n+1
}

// setClockOff records, in store metadata, whether the clock was last
// measured beyond the bound, so that a node restarted alone with a wrong
// clock does not write until a peer measures it.
func (e *Engine) setClockOff(off bool) {
	if off == e.clockOff {
		return
	}
	e.clockOff = off
	var v uint64
	if off {
		v = 1
	}
	// A failure here only loses the memory of the verdict across a restart;
	// the store's own errors are reported by the write path.
	_ = e.setMetaUint(metaClockOff, v)
}

// wallStepped reports whether the wall clock moved, since the last call,
// by more than half the offset bound beyond what the timer clock did: it
// was stepped (by an operator, or NTP on a clock far off). The offsets
// measured before no longer hold, so they are forgotten and writes wait for
// a new measurement; without this, a node whose clock jumped an hour ahead
// would stamp writes an hour ahead until its next probe round trip.
func (e *Engine) wallStepped(now time.Time) bool {
	wall := e.wall(now).Round(0) // the wall reading alone
	stepped := false
	if !e.lastWall.IsZero() {
		drift := wall.Sub(e.lastWall) - now.Sub(e.lastNow)
		stepped = drift.Abs() > e.cfg.MaxClockOffset/2
	}
	e.lastWall, e.lastNow = wall, now
	if stepped {
		// Until a peer measures the clock again, it is not trusted: a node
		// that steps while alone must not write with the new reading.
		e.setClockOff(true)
		e.members.ClockStepped(now)
		e.stats.ClockSteps++
	}
	return stepped
}

// SetWallOffset sets how far this node's wall clock, which stamps versions
// and clock samples, is from the clock its timers run on (the now it is
// given). A real node leaves it at zero: its timers follow the monotonic
// clock and its wall clock is now's own wall reading, so a wall clock
// stepped by NTP changes only its timestamps. The simulator and
// fault-injection builds set it to model a wrong wall clock the same way.
func (e *Engine) SetWallOffset(d time.Duration) {
	e.wallOffset = d
	e.members.SetWallOffset(d)
}

// wall is this node's wall clock at now.
func (e *Engine) wall(now time.Time) time.Time { return now.Add(e.wallOffset) }

// ClockStatus returns this node's clock offset to the cluster (positive:
// this node is ahead), how many peers it is the median of, and why local
// writes are refused for the clock (nil if they are not).
func (e *Engine) ClockStatus(now time.Time) (offset time.Duration, peers int, err error) {
	err = e.checkClock(now)
	return e.clockOffset, e.clockPeers, err
}

// Tick runs every timer that is due and sends the writes made since the
// last tick.
func (e *Engine) Tick(now time.Time) error {
	// Watch the wall clock on every tick, not only at writes: a step
	// before a node's first write would otherwise go unseen, and the
	// samples taken before it would vouch for the stepped clock.
	if e.cfg.MaxClockOffset > 0 && e.wallStepped(now) {
		e.clockCheckedAt = time.Time{}
	}
	e.view.Tick(now)
	e.tickTrust(now)
	e.drainMemberEvents()
	if len(e.fresh) > 0 && e.cfg.DirectMail && !now.Before(e.freshSince.Add(e.cfg.DirectMailWindow)) {
		limit := e.cfg.DirectMailMaxPeers
		peers := e.view.LivePeers()
		if limit > 0 && len(peers) > limit {
			// Over the limit, count only the members heard from directly:
			// members known only from others' news may be fakes that a
			// faulty member gossiped, and must not switch direct mail off.
			peers = e.view.HeardPeers()
		}
		if limit <= 0 || len(peers) <= limit {
			e.mail.Send(now, e.fresh, peers)
		}
		clear(e.fresh)
		e.fresh = e.fresh[:0]
	}
	if err := e.saveMembers(now); err != nil {
		return err
	}
	if err := e.mail.Tick(now); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	for _, a := range e.mail.DueAcks(now) {
		e.sendPeerOrAddr(&wire.Envelope{From: a.Peer, FromAddr: a.Addr}, a.Envelope())
	}
	if e.cfg.RumorMongering {
		if err := e.monger.Tick(now); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	e.tree.Tick(now)
	return e.tickAE(now)
}

func (e *Engine) drainMemberEvents() {
	for _, ev := range e.members.Events() {
		if ev.Member.State == wire.State_DEAD || ev.Member.State == wire.State_LEFT {
			// A dead member's mail is dropped; anti-entropy repairs it
			// when the member comes back.
			e.mail.Drop(ev.Member.Name)
			e.limits.forget(ev.Member.Name)
			e.tree.PeerDown(ev.Member.Name)
		} else if ev.Member.State == wire.State_ALIVE && e.cfg.Plumtree {
			e.tree.PeerUp(ev.Member.Name)
		}
		e.viewDirty = true
		e.ready.MemberEvents = append(e.ready.MemberEvents, ev)
	}
}

// Deadline returns when Tick next has work to do.
func (e *Engine) Deadline() time.Time {
	d := e.view.Deadline()
	if e.viewDirty {
		d = earliest(d, e.viewSavedAt.Add(membersSaveInterval))
	}
	d = earliest(d, e.mail.Deadline())
	if len(e.fresh) > 0 && e.cfg.DirectMail && e.cfg.DirectMailWindow > 0 {
		d = earliest(d, e.freshSince.Add(e.cfg.DirectMailWindow))
	}
	if e.cfg.RumorMongering {
		d = earliest(d, e.monger.Deadline())
	}
	d = earliest(d, e.tree.Deadline())
	d = earliest(d, e.trustDeadline())
	return earliest(d, e.ae.Deadline())
}

// Ready returns what the driver must do and clears it.
func (e *Engine) Ready() Ready {
	r := e.ready
	e.ready = Ready{}
	return r
}

// HasReady reports whether Ready has anything to return.
func (e *Engine) HasReady() bool {
	return len(e.ready.Messages) > 0 || len(e.ready.Changes) > 0 || len(e.ready.MemberEvents) > 0 || len(e.ready.Quarantine) > 0
}

// Join starts joining the cluster through the given seed addresses,
// retrying with backoff until one answers (see Joined).
func (e *Engine) Join(now time.Time, seeds []string) { e.members.Join(now, seeds) }

// Joined reports whether a seed has answered since the last Join.
func (e *Engine) Joined() bool { return e.members.Joined() }

// JoinError returns why the last join attempt failed, empty once joined.
func (e *Engine) JoinError() string { return e.members.JoinError() }

// Refused records a refusal notice from the node at addr: it could not
// authenticate what this node sent it. The notice is not authenticated, so
// it only explains a join that does not succeed.
func (e *Engine) Refused(addr, reason string) { e.members.Refused(addr, reason) }

// SetSeeds replaces the addresses join retries go to, keeping the backoff:
// the driver calls it when seed names resolve to new addresses.
func (e *Engine) SetSeeds(seeds []string) { e.members.SetSeeds(seeds) }

// Leave announces a graceful departure to every live member. LeaveAcked
// tells how far the announcement got.
func (e *Engine) Leave(now time.Time) error {
	e.members.Leave(now)
	e.drainMemberEvents()
	// Keep the incarnation the leave was announced at: started again, the
	// node comes back above it, and its alive news supersedes the leave.
	return e.setMetaUint(metaIncarnation, e.members.Self().Incarnation)
}

// LeaveAcked returns how many members acknowledged the leave, of how many
// it was sent to.
func (e *Engine) LeaveAcked() (acked, sent int) { return e.members.LeaveAcked() }

// Outbox returns how many direct-mail records wait for peer's
// acknowledgement in its outbox.
func (e *Engine) Outbox(peer string) int { return e.mail.Outbox(peer) }

// Members returns the membership view, self included, sorted by name.
func (e *Engine) Members() []membership.Member { return e.members.Members() }

// NumLive returns the number of live members, self included.
func (e *Engine) NumLive() int { return e.members.NumLive() }

// Self returns this node's own membership entry.
func (e *Engine) Self() membership.Member { return e.members.Self() }

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Mail = e.mail.Stats()
	s.Rumor = e.monger.Stats()
	s.Tree = e.tree.Stats()
	s.AntiEntropy = e.ae.Stats()
	s.Members = e.members.Stats()
	s.Trust = e.trustStatsNow()
	s.Certs = len(e.certs)
	s.Offences = e.Offences()
	return s
}

// earliest returns the earlier of two deadlines, the zero time meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
