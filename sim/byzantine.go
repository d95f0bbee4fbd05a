package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/internal/hlc"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// Byzantine behaviours: what a faulty node does to the messages its
// (real, unmodified) engine sends. The adversary lives in the simulator's
// message layer, never in the engine.
const (
	// Blackhole takes everything and forwards nothing: it answers the
	// membership protocol (so it looks alive and keeps being chosen), but
	// drops every message that carries or acknowledges records (mail,
	// rumors, fetches, anti-entropy). Its peers' exchanges with it stall
	// and their rumors die in it.
	Blackhole = "blackhole"
	// Future stamps the records it sends far ahead (an hour beyond its
	// clock), and invents writes so stamped of the workload's keys: the
	// records would win every conflict if accepted.
	Future = "future"
	// Flooder sends, besides what its engine sends, invented alive members
	// (64 a message), records that fail validation, and frames that do
	// not decode.
	Flooder = "flooder"
	// Accuser piggybacks false suspicions and death claims about live
	// honest members on everything it sends.
	Accuser = "accuser"
	// Replayer sends, besides what its engine sends, messages it sent
	// earlier, to random members.
	Replayer = "replayer"
	// Forger alters the values of the records it relays (keeping their
	// versions and signatures) and invents writes in honest nodes' names.
	// In a signed cluster (--signed) every receiver's signature check
	// refuses them; unsigned, nothing can tell them from real ones.
	Forger = "forger"
)

// Behaviours lists the byzantine behaviours the simulator knows.
var Behaviours = []string{Blackhole, Future, Flooder, Accuser, Replayer, Forger}

// ByzantineSpec makes a fraction of the cluster's nodes byzantine with
// one behaviour.
type ByzantineSpec struct {
	Behaviour string  `json:"behaviour" yaml:"behaviour"`
	Fraction  float64 `json:"fraction" yaml:"fraction"`
}

// String returns the flag form, BEHAVIOUR:FRACTION.
func (b ByzantineSpec) String() string {
	return b.Behaviour + ":" + strconv.FormatFloat(b.Fraction, 'g', -1, 64)
}

// ParseByzantine parses the --byzantine flag: BEHAVIOUR:FRACTION[,...].
func ParseByzantine(s string) ([]ByzantineSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []ByzantineSpec
	for part := range strings.SplitSeq(s, ",") {
		b, f, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("sim: --byzantine %q: want BEHAVIOUR:FRACTION[,...], e.g. blackhole:0.2", part)
		}
		x, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("sim: --byzantine %q: fraction: %w", part, err)
		}
		out = append(out, ByzantineSpec{Behaviour: b, Fraction: x})
	}
	return out, nil
}

func (b ByzantineSpec) validate() error {
	if !slices.Contains(Behaviours, b.Behaviour) {
		return fmt.Errorf("sim: byzantine behaviour %q: want one of %s", b.Behaviour, strings.Join(Behaviours, ", "))
	}
	if b.Fraction <= 0 || b.Fraction >= 1 || math.IsNaN(b.Fraction) {
		return fmt.Errorf("sim: byzantine %s: fraction %v: want a fraction of the nodes in (0, 1)", b.Behaviour, b.Fraction)
	}
	return nil
}

// QuarantineCounts is what the honest nodes' quarantine decisions were.
type QuarantineCounts struct {
	// Byzantine counts (honest node, byzantine node) pairs in which the
	// honest node quarantined the byzantine one at some point; False the
	// pairs in which it quarantined an honest node.
	Byzantine int `json:"byzantine" yaml:"byzantine"`
	False     int `json:"false" yaml:"false"`
	// All is when, in seconds of virtual time from the start of the
	// workload, the last byzantine node came to be quarantined by every
	// running honest node; -1 if some never was.
	All float64 `json:"all" yaml:"all"`
}

// QuarantineSummary is QuarantineCounts averaged over the runs. All is -1
// if in some run a byzantine node was never quarantined by every honest
// node.
type QuarantineSummary struct {
	Byzantine float64 `json:"byzantine" yaml:"byzantine"`
	False     float64 `json:"false" yaml:"false"`
	All       float64 `json:"all" yaml:"all"`
}

// byzantine is the adversary of one faulty node: it rewrites what the
// node's engine sends.
type byzantine struct {
	r         *runner
	n         *Node
	behaviour string
	rng       *rand.Rand
	fakes     int              // fake members invented so far
	sent      []engine.Message // replayer: messages sent earlier (a ring)
	next      int
}

// futureAhead is how far ahead the future behaviour stamps versions.
const futureAhead = time.Hour

// mangle returns what the faulty node sends instead of m.
func (b *byzantine) mangle(m engine.Message) []engine.Message {
	if !b.r.attack {
		return []engine.Message{m}
	}
	switch b.behaviour {
	case Blackhole:
		if isData(m.Env) {
			return nil
		}
		return []engine.Message{m}
	case Future:
		env := proto.Clone(m.Env).(*wire.Envelope)
		for _, rec := range records(env) {
			b.stamp(rec)
		}
		out := []engine.Message{{To: m.To, Env: env, AfterSync: m.AfterSync}}
		if b.rng.IntN(2) == 0 {
			key := fmt.Sprintf("k%d", b.rng.IntN(max(b.r.s.Workload.Keys, 1)))
			rec := &wire.Record{Key: []byte(key), Value: []byte("future")}
			b.stamp(rec)
			out = append(out, b.envelope(m.To, &wire.Envelope{Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: b.rng.Uint64(), Records: []*wire.Record{rec}}}}))
		}
		return out
	case Flooder:
		junk := &wire.Envelope{Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: b.rng.Uint64(), Records: []*wire.Record{
			{Key: nil, Value: []byte("junk"), Hlc: 1, Node: b.n.cfg.NodeID},
		}}}}
		for range 64 {
			b.fakes++
			name := fmt.Sprintf("fake-%s-%d", b.n.Name, b.fakes)
			junk.Members = append(junk.Members, &wire.Member{Name: name, Address: name, Incarnation: 1, NodeId: uint64(1<<40 + b.fakes)})
		}
		out := []engine.Message{m, b.envelope(m.To, junk)}
		// It floods everyone, not only the peers its engine talks to.
		if t := b.r.randomHonest(); t != nil {
			out = append(out, b.envelope(t.Addr, proto.Clone(junk).(*wire.Envelope)))
			if b.rng.IntN(4) == 0 {
				b.r.c.sendRaw(b.n, t.Addr, []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01})
			}
		}
		return out
	case Accuser:
		env := proto.Clone(m.Env).(*wire.Envelope)
		for range 2 {
			t := b.r.randomHonest()
			if t == nil {
				break
			}
			inc := t.Engine.Self().Incarnation
			state := wire.State_SUSPECT
			if b.rng.IntN(2) == 0 {
				state = wire.State_DEAD
			}
			env.Members = append(env.Members, &wire.Member{Name: t.Name, Address: t.Addr, NodeId: t.cfg.NodeID, Incarnation: inc, State: state, From: b.n.Name})
		}
		return []engine.Message{{To: m.To, Env: env, AfterSync: m.AfterSync}}
	case Forger:
		env := proto.Clone(m.Env).(*wire.Envelope)
		for _, rec := range records(env) {
			if !rec.Tombstone {
				rec.Value = append(rec.Value, "-forged"...)
				b.r.forgedValues[forgedKey{string(rec.Key), store.Version{HLC: rec.Hlc, Node: rec.Node}}] = string(rec.Value)
			}
		}
		out := []engine.Message{{To: m.To, Env: env, AfterSync: m.AfterSync}}
		if t := b.r.randomHonest(); t != nil && b.rng.IntN(2) == 0 {
			// A write in an honest node's name, a little newer than
			// anything it wrote.
			key := fmt.Sprintf("k%d", b.rng.IntN(max(b.r.s.Workload.Keys, 1)))
			ms := uint64(b.r.c.now.Add(b.n.skew(b.r.c.now)).UnixMilli())
			rec := &wire.Record{Key: []byte(key), Value: []byte("forged"), Hlc: hlc.Pack(ms, uint16(b.rng.IntN(1<<10))), Node: t.cfg.NodeID}
			b.r.forgedValues[forgedKey{key, store.Version{HLC: rec.Hlc, Node: rec.Node}}] = "forged"
			out = append(out, b.envelope(m.To, &wire.Envelope{Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: b.rng.Uint64(), Records: []*wire.Record{rec}}}}))
		}
		return out
	case Replayer:
		out := []engine.Message{m}
		if len(b.sent) > 0 && b.rng.IntN(2) == 0 {
			old := b.sent[b.rng.IntN(len(b.sent))]
			if t := b.r.randomHonest(); t != nil {
				old.To = t.Addr
				out = append(out, old)
			}
		}
		if len(b.sent) < 256 {
			b.sent = append(b.sent, m)
		} else {
			b.sent[b.next] = m
			b.next = (b.next + 1) % len(b.sent)
		}
		return out
	}
	return []engine.Message{m}
}

// stamp puts rec an hour ahead of the faulty node's clock, and remembers
// the version as forged.
func (b *byzantine) stamp(rec *wire.Record) {
	ms := uint64(b.r.c.now.Add(b.n.skew(b.r.c.now)).Add(futureAhead).UnixMilli())
	rec.Hlc = hlc.Pack(ms, uint16(b.rng.IntN(1<<10)))
	if rec.Node == 0 {
		rec.Node = b.n.cfg.NodeID
	}
	b.r.forged[forgedKey{string(rec.Key), store.Version{HLC: rec.Hlc, Node: rec.Node}}] = true
}

// envelope fills in the faulty node's sender fields, as its engine would.
func (b *byzantine) envelope(to string, env *wire.Envelope) engine.Message {
	env.Protocol = wire.ProtocolVersion
	env.Cluster = b.n.cfg.Cluster
	env.From = b.n.Name
	env.FromAddr = b.n.Addr
	env.FromId = b.n.cfg.NodeID
	return engine.Message{To: to, Env: env}
}

// forgedKey identifies a record version an adversary made up.
type forgedKey struct {
	key string
	ver store.Version
}

// isData reports whether env belongs to replication rather than
// membership.
func isData(env *wire.Envelope) bool {
	switch env.Body.(type) {
	case *wire.Envelope_Mail, *wire.Envelope_MailAck, *wire.Envelope_MailAcks, *wire.Envelope_Rumor, *wire.Envelope_RumorAck,
		*wire.Envelope_RumorPull, *wire.Envelope_Fetch,
		*wire.Envelope_AeStart, *wire.Envelope_AeMore, *wire.Envelope_AeCells, *wire.Envelope_AeDiff,
		*wire.Envelope_AeRecords, *wire.Envelope_AeAck, *wire.Envelope_AeError:
		return true
	}
	return false
}

// records returns the records env carries.
func records(env *wire.Envelope) []*wire.Record {
	switch b := env.Body.(type) {
	case *wire.Envelope_Mail:
		return b.Mail.Records
	case *wire.Envelope_Rumor:
		return b.Rumor.Records
	case *wire.Envelope_AeRecords:
		return b.AeRecords.Records
	}
	return nil
}

// pickByzantine chooses which of the scenario's nodes are byzantine: for
// each behaviour, its fraction of the nodes (at least one), drawn from the
// nodes after the first (the seed every node joins through).
func (r *runner) pickByzantine() []bool {
	byz := make([]bool, r.s.Nodes)
	if len(r.s.Byzantine) == 0 {
		return byz
	}
	r.byzKind = map[int]string{}
	rng := rand.New(rand.NewPCG(r.res.Seed, 0xb42a471e))
	free := make([]int, 0, r.s.Nodes-1)
	for i := 1; i < r.s.Nodes; i++ {
		free = append(free, i)
	}
	for _, b := range r.s.Byzantine {
		k := max(1, int(math.Round(b.Fraction*float64(r.s.Nodes))))
		for range k {
			if len(free) == 0 {
				break
			}
			j := rng.IntN(len(free))
			i := free[j]
			free = slices.Delete(free, j, j+1)
			byz[i] = true
			r.byzKind[i] = b.Behaviour
		}
	}
	return byz
}

// behaviour returns node i's byzantine behaviour.
func (r *runner) behaviour(i int) string { return r.byzKind[i] }

// onQuarantine records an honest node's quarantine decision.
func (r *runner) onQuarantine(n *Node, ch trust.Change) {
	i := idx(n)
	t := r.c.byName[ch.Peer]
	if r.byz[i] || t == nil {
		return
	}
	j := idx(t)
	if ch.Quarantined {
		r.note("%s quarantined %s (%s, penalty %.0f)", n.Name, ch.Peer, ch.Kind, ch.Penalty)
	} else {
		r.note("%s released %s", n.Name, ch.Peer)
	}
	if ch.Quarantined && !r.qPairs[[2]int{i, j}] {
		r.qPairs[[2]int{i, j}] = true
		if r.byz[j] {
			r.res.Quarantined.Byzantine++
		} else {
			r.res.Quarantined.False++
		}
	}
	if !r.byz[j] {
		return
	}
	set := r.qBy[j]
	if set == nil {
		set = map[int]bool{}
		r.qBy[j] = set
	}
	if ch.Quarantined {
		set[i] = true
	} else {
		delete(set, i)
	}
	if _, done := r.qAllAt[j]; done {
		return
	}
	for _, h := range r.honestLive() {
		if !set[idx(h)] {
			return
		}
	}
	r.qAllAt[j] = r.c.now
}

// sampleInvented counts, at one step, the invented members the honest
// nodes hold alive or suspect, for RunResult.InventedPeak and
// InventedGone.
func (r *runner) sampleInvented() {
	if len(r.adv) == 0 {
		return
	}
	most := 0
	for _, n := range r.honestLive() {
		k := r.invented(n)
		most = max(most, k)
	}
	r.res.InventedPeak = max(r.res.InventedPeak, most)
	if most > 0 {
		r.inventedSeen = r.c.now
	}
}

// invented returns how many members n holds alive or suspect that no node
// of the cluster is: invented by an adversary.
func (r *runner) invented(n *Node) int {
	k := 0
	for _, m := range n.Engine.Members() {
		if r.c.byName[m.Name] == nil && m.Live() {
			k++
		}
	}
	return k
}

// finishByzantine sums up the quarantine decisions and counts the
// invented members still alive.
func (r *runner) finishByzantine() {
	if len(r.adv) == 0 {
		return
	}
	for _, n := range r.honestLive() {
		r.res.InventedAlive = max(r.res.InventedAlive, r.invented(n))
	}
	switch {
	case r.res.InventedAlive > 0:
		r.res.InventedGone = -1
	case !r.inventedSeen.IsZero():
		r.res.InventedGone = r.since(r.inventedSeen.Add(time.Duration(r.s.Cycle)))
	}
	r.res.Quarantined.All = 0
	for _, a := range r.adv {
		at, ok := r.qAllAt[idx(a.n)]
		if !ok {
			r.res.Quarantined.All = -1
			return
		}
		r.res.Quarantined.All = max(r.res.Quarantined.All, at.Sub(r.start).Seconds())
	}
}
