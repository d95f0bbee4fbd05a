// Package directmail sends each update at once to every other member
// (Demers et al. 1987, §1.1 "direct mail") and keeps what could not be
// delivered.
//
// Every mail is acknowledged by its receiver once the records are durable
// there. Mail that is not acknowledged in time goes into the peer's outbox:
// bounded by count and bytes, persisted in the store's metadata so that a
// restart does not lose it, and retried with exponential backoff and jitter
// until it is delivered, the peer is declared dead, or the bound is hit. What
// is dropped is counted; anti-entropy repairs it later.
//
// The package is pure: time and randomness come from the caller.
package directmail

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// Config bounds the outboxes and paces retries.
type Config struct {
	// AckTimeout is how long a mail may go unacknowledged before its
	// records move to the outbox.
	AckTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff between retries.
	RetryMin, RetryMax time.Duration
	// OutboxMaxRecords and OutboxMaxBytes bound each peer's outbox. Records
	// beyond them are dropped and counted.
	OutboxMaxRecords int
	OutboxMaxBytes   int
	// MaxMailBytes caps the record bytes in one mail; more are split.
	MaxMailBytes int
	// AckDelay is how long a receiver may hold the acknowledgement of a
	// mail to collect those of the sender's next mails into the same
	// message (see Acknowledge). 0 acknowledges each mail at once. It
	// must stay well below the sender's AckTimeout.
	AckDelay time.Duration
	// MaxAckIDs bounds the ids owed to one sender: at that many the
	// acknowledgement leaves at once, so that it stays within a datagram
	// (128 ids take at most 1.3 KB, and far less while ids are small).
	MaxAckIDs int
}

// DefaultConfig returns bounds that hold a few minutes of moderate write
// traffic for a peer that is away, and retries that back off to 10 s.
func DefaultConfig() Config {
	return Config{
		AckTimeout:       time.Second,
		RetryMin:         250 * time.Millisecond,
		RetryMax:         10 * time.Second,
		OutboxMaxRecords: 100_000,
		OutboxMaxBytes:   64 << 20,
		MaxMailBytes:     1 << 20,
		// At 50 ms, a writer that mails every 10 ms gets one
		// acknowledgement per five mails from each peer, and the sender's
		// 1 s AckTimeout is twenty times longer.
		AckDelay:  50 * time.Millisecond,
		MaxAckIDs: 128,
	}
}

// Stats counts what the mailer did.
type Stats struct {
	MailsSent     uint64 // mail messages sent, first tries and retries
	RecordsSent   uint64 // records carried by them
	Retries       uint64 // mail messages sent from an outbox
	Acked         uint64 // mail messages acknowledged
	TimedOut      uint64 // mail messages that went unacknowledged
	Queued        uint64 // records put into an outbox
	Dropped       uint64 // records dropped: outbox full, or peer dead
	OutboxRecords int    // records now waiting, over all peers
	OutboxBytes   int    // their bytes
	AcksOwed      uint64 // received mails owed an acknowledgement (one per mail)
	AckMessages   uint64 // acknowledgement messages sent for them
	AcksPending   int    // mail ids whose acknowledgement waits now
}

// SendFunc hands a mail to the caller for delivery to the named peer. It
// returns false when the peer cannot be addressed (unknown to membership);
// the mail then counts as failed at once.
type SendFunc func(peer string, env *wire.Envelope) bool

type entry struct {
	version store.Version
	size    int
}

type flight struct {
	id       uint64
	versions map[string]store.Version
	deadline time.Time
	retry    bool
}

type peer struct {
	name      string
	inflight  []*flight
	outbox    map[string]entry
	bytes     int
	attempt   int
	nextRetry time.Time // zero: no retry scheduled
}

// Mailer is the direct-mail state of one node. It is not safe for concurrent
// use.
type Mailer struct {
	cfg    Config
	st     store.Store
	rng    *rand.Rand
	send   SendFunc
	nextID uint64
	peers  map[string]*peer
	names  []string // sorted peer names, for deterministic iteration
	stats  Stats
	// acks are the acknowledgements owed to senders, by sender; ackOrder
	// their senders in the order the first id was owed.
	acks     map[string]*PendingAck
	ackOrder []string
}

const metaPrefix = "ob/"

// New returns a mailer and reloads the outboxes persisted in st.
func New(cfg Config, st store.Store, rng *rand.Rand, send SendFunc) (*Mailer, error) {
	m := &Mailer{cfg: cfg, st: st, rng: rng, send: send, peers: map[string]*peer{}, acks: map[string]*PendingAck{}}
	var bad error
	err := st.ScanMeta([]byte(metaPrefix), func(k, v []byte) bool {
		name, key, ok := strings.Cut(string(k[len(metaPrefix):]), "\x00")
		if !ok || len(v) != 20 {
			bad = fmt.Errorf("directmail: corrupt outbox entry %q", k)
			return false
		}
		p := m.peer(name)
		e := entry{
			version: store.Version{HLC: binary.BigEndian.Uint64(v), Node: binary.BigEndian.Uint64(v[8:])},
			size:    int(binary.BigEndian.Uint32(v[16:])),
		}
		p.outbox[key] = e
		p.bytes += e.size
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("directmail: load outboxes: %w", err)
	}
	if bad != nil {
		return nil, bad
	}
	for _, p := range m.peers {
		m.stats.OutboxRecords += len(p.outbox)
		m.stats.OutboxBytes += p.bytes
	}
	return m, nil
}

func (m *Mailer) peer(name string) *peer {
	p, ok := m.peers[name]
	if !ok {
		p = &peer{name: name, outbox: map[string]entry{}}
		m.peers[name] = p
		i, _ := slices.BinarySearch(m.names, name)
		m.names = slices.Insert(m.names, i, name)
	}
	return p
}

// Stats returns the counters.
func (m *Mailer) Stats() Stats {
	s := m.stats
	s.AcksPending = m.AcksPending()
	return s
}

// Outbox returns the number of records waiting for the named peer.
func (m *Mailer) Outbox(name string) int {
	if p, ok := m.peers[name]; ok {
		return len(p.outbox)
	}
	return 0
}

// Send mails recs at once to each of the named peers. Every peer gets the
// same mail body (one pointer, one id), each in an envelope of its own, so
// that the driver can encode the records once for all of them (see
// wire.SharedBody).
func (m *Mailer) Send(now time.Time, recs []store.Record, peers []string) {
	if len(recs) == 0 || len(peers) == 0 {
		return
	}
	for _, batch := range m.split(recs) {
		body := m.body(batch)
		for _, name := range peers {
			m.deliver(now, m.peer(name), batch, body, false)
		}
	}
}

func (m *Mailer) split(recs []store.Record) [][]store.Record {
	var out [][]store.Record
	start, size := 0, 0
	for i, r := range recs {
		if i > start && size+r.Size() > m.cfg.MaxMailBytes {
			out = append(out, recs[start:i])
			start, size = i, 0
		}
		size += r.Size()
	}
	return append(out, recs[start:])
}

// body returns a mail of recs under a new id. Acks are matched per peer, so
// peers that get the same mail share its id.
func (m *Mailer) body(recs []store.Record) *wire.Envelope_Mail {
	m.nextID++
	ws := make([]*wire.Record, len(recs))
	for i, r := range recs {
		ws[i] = wire.FromStore(r)
	}
	return &wire.Envelope_Mail{Mail: &wire.Mail{Id: m.nextID, Records: ws}}
}

func (m *Mailer) mail(now time.Time, p *peer, recs []store.Record, retry bool) {
	m.deliver(now, p, recs, m.body(recs), retry)
}

// deliver sends body, the mail of recs, to p and awaits its ack.
func (m *Mailer) deliver(now time.Time, p *peer, recs []store.Record, body *wire.Envelope_Mail, retry bool) {
	f := &flight{id: body.Mail.Id, versions: make(map[string]store.Version, len(recs)), deadline: now.Add(m.cfg.AckTimeout), retry: retry}
	for _, r := range recs {
		f.versions[string(r.Key)] = r.Version
	}
	p.inflight = append(p.inflight, f)
	m.stats.MailsSent++
	m.stats.RecordsSent += uint64(len(recs))
	if retry {
		m.stats.Retries++
	}
	if !m.send(p.name, &wire.Envelope{Body: body}) {
		f.deadline = now // fails at the next tick
	}
}

// Ack records that the named peer holds the mail with this id durably.
func (m *Mailer) Ack(now time.Time, name string, id uint64) {
	p, ok := m.peers[name]
	if !ok {
		return
	}
	i := slices.IndexFunc(p.inflight, func(f *flight) bool { return f.id == id })
	if i < 0 {
		return // late ack of a mail already given up on: harmless
	}
	f := p.inflight[i]
	p.inflight = slices.Delete(p.inflight, i, i+1)
	m.stats.Acked++
	// Delivered records leave the outbox, unless a newer version of the
	// key has been queued meanwhile.
	for _, k := range sortedKeys(f.versions) {
		if e, ok := p.outbox[k]; ok && e.version.Compare(f.versions[k]) <= 0 {
			m.unqueue(p, k)
		}
	}
	if f.retry {
		p.attempt = 0
		if len(p.outbox) > 0 {
			p.nextRetry = now
		} else {
			p.nextRetry = time.Time{}
		}
	}
}

// Contact tells the mailer that a message arrived from the named peer: if
// mail waits for it, retry now rather than at the end of the backoff.
func (m *Mailer) Contact(now time.Time, name string) {
	p, ok := m.peers[name]
	if !ok || len(p.outbox) == 0 || p.attempt == 0 || m.retrying(p) {
		return
	}
	p.nextRetry = now
}

func (m *Mailer) retrying(p *peer) bool {
	return slices.ContainsFunc(p.inflight, func(f *flight) bool { return f.retry })
}

// Drop empties the named peer's outbox and forgets its mail in flight: the
// peer is dead or has left. The records are counted as dropped.
func (m *Mailer) Drop(name string) {
	p, ok := m.peers[name]
	if !ok {
		return
	}
	for _, k := range sortedKeys(p.outbox) {
		m.unqueue(p, k)
		m.stats.Dropped++
	}
	p.inflight = nil
	p.attempt = 0
	p.nextRetry = time.Time{}
}

// DropAll empties every outbox, as Drop does for one peer.
func (m *Mailer) DropAll() {
	for _, name := range m.names {
		m.Drop(name)
	}
}

// Deadline returns the next time Tick has work to do, or the zero time.
func (m *Mailer) Deadline() time.Time {
	var d time.Time
	for _, name := range m.names {
		p := m.peers[name]
		for _, f := range p.inflight {
			d = earliest(d, f.deadline)
		}
		d = earliest(d, p.nextRetry)
	}
	return earliest(d, m.ackDeadline())
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// Tick moves timed-out mail into outboxes and sends retries that are due.
func (m *Mailer) Tick(now time.Time) error {
	for _, name := range m.names {
		p := m.peers[name]
		var failedRetry bool
		keep := p.inflight[:0]
		for _, f := range p.inflight {
			if now.Before(f.deadline) {
				keep = append(keep, f)
				continue
			}
			m.stats.TimedOut++
			failedRetry = failedRetry || f.retry
			for _, k := range sortedKeys(f.versions) {
				if err := m.queue(p, k, f.versions[k]); err != nil {
					return err
				}
			}
		}
		clear(p.inflight[len(keep):])
		p.inflight = keep
		if failedRetry {
			p.attempt++
		}
		if len(p.outbox) == 0 {
			p.nextRetry = time.Time{}
			continue
		}
		if p.nextRetry.IsZero() || failedRetry {
			p.nextRetry = now.Add(m.backoff(p.attempt))
		}
		if !now.Before(p.nextRetry) {
			if m.retrying(p) {
				// One retry at a time: its ack or timeout schedules the next.
				p.nextRetry = time.Time{}
				continue
			}
			if err := m.retry(now, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// backoff is RetryMin doubled per failed attempt, capped at RetryMax, with
// "equal jitter": half fixed, half random.
func (m *Mailer) backoff(attempt int) time.Duration {
	d := m.cfg.RetryMin << min(attempt, 30)
	if d > m.cfg.RetryMax || d <= 0 {
		d = m.cfg.RetryMax
	}
	if d < 2 {
		return d
	}
	return d/2 + time.Duration(m.rng.Int64N(int64(d/2)))
}

// retry sends one mail's worth of the outbox, reading each record's current
// state from the store so that the newest version travels.
func (m *Mailer) retry(now time.Time, p *peer) error {
	var recs []store.Record
	size := 0
	for _, k := range sortedKeys(p.outbox) {
		r, ok, err := m.st.Get([]byte(k))
		if err != nil {
			return fmt.Errorf("directmail: read %q for retry: %w", k, err)
		}
		if !ok {
			// Collected since (a tombstone past its grace period): nothing
			// left to deliver.
			m.unqueue(p, k)
			continue
		}
		if len(recs) > 0 && size+r.Size() > m.cfg.MaxMailBytes {
			break
		}
		recs = append(recs, r)
		size += r.Size()
	}
	p.nextRetry = time.Time{}
	if len(recs) > 0 {
		m.mail(now, p, recs, true)
	}
	return nil
}

func (m *Mailer) queue(p *peer, key string, v store.Version) error {
	if e, ok := p.outbox[key]; ok {
		if v.Compare(e.version) > 0 {
			e.version = v
			p.outbox[key] = e
			return m.persist(p, key, e)
		}
		return nil
	}
	size := len(key) + 64
	if r, ok, err := m.st.Get([]byte(key)); err == nil && ok {
		size = r.Size()
	}
	if len(p.outbox)+1 > m.cfg.OutboxMaxRecords || p.bytes+size > m.cfg.OutboxMaxBytes {
		m.stats.Dropped++
		return nil
	}
	e := entry{version: v, size: size}
	p.outbox[key] = e
	p.bytes += size
	m.stats.Queued++
	m.stats.OutboxRecords++
	m.stats.OutboxBytes += size
	return m.persist(p, key, e)
}

func (m *Mailer) unqueue(p *peer, key string) {
	e, ok := p.outbox[key]
	if !ok {
		return
	}
	delete(p.outbox, key)
	p.bytes -= e.size
	m.stats.OutboxRecords--
	m.stats.OutboxBytes -= e.size
	// A failed delete leaves a stale entry that the next start reloads and
	// retries; delivery is idempotent, so that is harmless.
	_ = m.st.SetMeta(metaKey(p.name, key), nil)
}

func (m *Mailer) persist(p *peer, key string, e entry) error {
	v := make([]byte, 20)
	binary.BigEndian.PutUint64(v, e.version.HLC)
	binary.BigEndian.PutUint64(v[8:], e.version.Node)
	binary.BigEndian.PutUint32(v[16:], uint32(e.size))
	if err := m.st.SetMeta(metaKey(p.name, key), v); err != nil {
		return fmt.Errorf("directmail: persist outbox for %s: %w", p.name, err)
	}
	return nil
}

func metaKey(peer, key string) []byte {
	var b bytes.Buffer
	b.WriteString(metaPrefix)
	b.WriteString(peer)
	b.WriteByte(0)
	b.WriteString(key)
	return b.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
