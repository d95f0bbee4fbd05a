package hearsay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hearsaydb/hearsay/engine"
)

// How a version reached a member, as Holder.Via says it.
const (
	ViaLocal       = engine.ViaLocal       // written by the member's own client
	ViaDirectMail  = engine.ViaDirectMail  // mailed by its writer
	ViaRumor       = engine.ViaRumor       // rumor mongering
	ViaAntiEntropy = engine.ViaAntiEntropy // an anti-entropy exchange
)

// MaxSpreadKeys is the most keys one Spread call asks about.
const MaxSpreadKeys = engine.MaxSpreadKeys

// maxSpreadQueries bounds the spread queries waiting for answers at once.
const maxSpreadQueries = 16

// defaultSpreadWait is how long Spread waits for members' answers when its
// context has no deadline.
const defaultSpreadWait = 2 * time.Second

// ErrBusy is returned by Spread while too many spread queries are waiting
// for answers.
var ErrBusy = errors.New("hearsay: too many spread queries at once")

// SpreadReport is how far some keys have spread: what every member that
// answered holds of each.
type SpreadReport struct {
	// Asked is how many members were asked, this node included; Answered
	// how many answered before the wait ended.
	Asked    int         `json:"asked"`
	Answered int         `json:"answered"`
	Keys     []KeySpread `json:"keys"`
}

// KeySpread is what the members hold of one key, one Holder per member
// that answered, sorted by name.
type KeySpread struct {
	Key     []byte   `json:"-"`
	Holders []Holder `json:"holders"`
}

// Holder is one member's answer for one key.
type Holder struct {
	Member string `json:"member"`
	// Present is false when the member holds no record of the key.
	Present bool    `json:"present"`
	Version Version `json:"-"`
	Deleted bool    `json:"deleted,omitempty"`
	// Via is how that version reached the member (ViaLocal, ViaDirectMail,
	// ViaRumor, ViaAntiEntropy); empty when it arrived before the member's
	// window of recent arrivals (the last 4,096 changes).
	Via string `json:"via,omitempty"`
}

// Holds reports how many holders have version v or a newer one.
func (k KeySpread) Holds(v Version) int {
	n := 0
	for _, h := range k.Holders {
		if h.Present && h.Version.Compare(v) >= 0 {
			n++
		}
	}
	return n
}

type spreadReq struct {
	keys [][]byte
}

type spreadStart struct {
	id      uint64
	asked   []string
	local   []engine.SpreadEntry
	answers chan engine.SpreadReply
}

// Spread asks every live member which version of each key it holds and by
// which mechanism it arrived: how far an update has spread (the dashboard
// follows recent writes with it). It waits until every member asked has
// answered or ctx ends (2 s without a deadline), and reports what came. At
// most MaxSpreadKeys keys.
func (n *Node) Spread(ctx context.Context, keys [][]byte) (SpreadReport, error) {
	if err := n.usable(); err != nil && !errors.Is(err, ErrNotReady) {
		return SpreadReport{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultSpreadWait)
		defer cancel()
	}
	res, err := n.do(ctx, request{spread: &spreadReq{keys: keys}})
	if err != nil {
		return SpreadReport{}, fmt.Errorf("hearsay: spread: %w", err)
	}
	st := res.spread
	defer func() {
		n.spreadMu.Lock()
		delete(n.spreads, st.id)
		n.spreadMu.Unlock()
	}()
	answers := map[string][]engine.SpreadEntry{n.cfg.Name: st.local}
	pending := map[string]bool{}
	for _, a := range st.asked {
		pending[a] = true
	}
wait:
	for len(pending) > 0 {
		select {
		case r := <-st.answers:
			if pending[r.From] && len(r.Entries) == len(keys) {
				delete(pending, r.From)
				answers[r.From] = r.Entries
			}
		case <-ctx.Done():
			break wait
		case <-n.done:
			return SpreadReport{}, ErrClosed
		}
	}
	rep := SpreadReport{Asked: len(st.asked) + 1, Answered: len(answers), Keys: make([]KeySpread, len(keys))}
	for i, k := range keys {
		ks := KeySpread{Key: k}
		for member, es := range answers {
			e := es[i]
			if string(e.Key) != string(k) {
				continue // a confused answer: it does not count
			}
			ks.Holders = append(ks.Holders, Holder{Member: member, Present: e.Present, Version: e.Version, Deleted: e.Tombstone, Via: e.Via})
		}
		slices.SortFunc(ks.Holders, func(a, b Holder) int { return strings.Compare(a.Member, b.Member) })
		rep.Keys[i] = ks
	}
	return rep, nil
}

// startSpread runs in the loop: it sends the queries, registers where the
// answers go and takes this node's own answer.
func (n *Node) startSpread(r *spreadReq) result {
	n.spreadMu.Lock()
	busy := len(n.spreads) >= maxSpreadQueries
	n.spreadMu.Unlock()
	if busy {
		return result{err: ErrBusy}
	}
	local, err := n.eng.LocalSpread(r.keys)
	if err != nil {
		return result{err: err}
	}
	id, asked, err := n.eng.QuerySpread(r.keys)
	if err != nil {
		return result{err: err}
	}
	st := &spreadStart{id: id, asked: asked, local: local, answers: make(chan engine.SpreadReply, len(asked))}
	n.spreadMu.Lock()
	if n.spreads == nil {
		n.spreads = map[uint64]*spreadStart{}
	}
	n.spreads[id] = st
	n.spreadMu.Unlock()
	return result{spread: st}
}

// routeSpread hands members' answers to the Spread calls waiting for them;
// answers to queries no longer waited for are dropped.
func (n *Node) routeSpread(rs []engine.SpreadReply) {
	if len(rs) == 0 {
		return
	}
	n.spreadMu.Lock()
	defer n.spreadMu.Unlock()
	for _, r := range rs {
		if st, ok := n.spreads[r.ID]; ok {
			select {
			case st.answers <- r:
			default: // more answers than members asked: a duplicate
			}
		}
	}
}
