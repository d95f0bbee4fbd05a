package engine

import (
	"fmt"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// How a version reached a node, as SpreadEntry.Via says it.
const (
	ViaLocal       = "local"        // written by this node's client
	ViaDirectMail  = "direct-mail"  // mailed by its writer
	ViaRumor       = "rumor"        // pushed, pulled or fetched by rumor mongering
	ViaPlumtree    = "plumtree"     // pushed or grafted along the broadcast tree
	ViaAntiEntropy = "anti-entropy" // repaired by an anti-entropy exchange
)

// MaxSpreadKeys is the most keys one spread query asks about.
const MaxSpreadKeys = 64

// maxArrivals bounds the recent-arrivals window: how many keys' arrival
// mechanisms a node remembers for spread queries.
const maxArrivals = 4096

// arrival is how and when the version of a key this node holds arrived.
type arrival struct {
	version store.Version
	via     string
}

// arrivals remembers the mechanism of the last maxArrivals changes, oldest
// evicted first: enough for an observer to follow recent updates without
// growing with the store.
type arrivals struct {
	by    map[string]arrival
	order []string // ring of keys, oldest at next
	next  int
}

func (a *arrivals) note(key []byte, v store.Version, via string) {
	if a.by == nil {
		a.by = make(map[string]arrival)
	}
	k := string(key)
	if _, ok := a.by[k]; !ok {
		if len(a.order) < maxArrivals {
			a.order = append(a.order, k)
		} else {
			delete(a.by, a.order[a.next])
			a.order[a.next] = k
			a.next = (a.next + 1) % maxArrivals
		}
	}
	a.by[k] = arrival{version: v, via: via}
}

// via is how version v of key arrived, "" if not remembered.
func (a *arrivals) via(key []byte, v store.Version) string {
	if ar, ok := a.by[string(key)]; ok && ar.version == v {
		return ar.via
	}
	return ""
}

// noteArrivals remembers the mechanism of the received records that changed
// the store.
func (e *Engine) noteArrivals(ws []*wire.Record, changed []bool, via string) {
	for i, c := range changed {
		if c {
			e.arrived.note(ws[i].Key, store.Version{HLC: ws[i].Hlc, Node: ws[i].Node}, via)
		}
	}
}

// SpreadReply is a member's answer to a spread query, handed to the driver
// in Ready.Spread.
type SpreadReply struct {
	ID      uint64
	From    string
	Entries []SpreadEntry
}

// SpreadEntry is what one node holds of one key.
type SpreadEntry struct {
	Key       []byte
	Present   bool
	Version   store.Version
	Tombstone bool
	Via       string // a Via constant, "" if it arrived before the window
}

// QuerySpread asks every live member which version of each key it holds and
// how it arrived; the answers come back in Ready.Spread under the returned
// id. It returns the members asked. Keys beyond MaxSpreadKeys are an error.
func (e *Engine) QuerySpread(keys [][]byte) (id uint64, asked []string, err error) {
	if len(keys) == 0 || len(keys) > MaxSpreadKeys {
		return 0, nil, fmt.Errorf("engine: spread query of %d keys: want 1 to %d", len(keys), MaxSpreadKeys)
	}
	for _, k := range keys {
		if len(k) == 0 || len(k) > store.MaxKeySize {
			return 0, nil, fmt.Errorf("engine: spread query: key of %d bytes: want 1 to %d", len(k), store.MaxKeySize)
		}
	}
	for id == 0 {
		id = e.rng.Uint64()
	}
	for _, name := range e.view.LivePeers() {
		if e.sendPeer(name, &wire.Envelope{Body: &wire.Envelope_SpreadQuery{SpreadQuery: &wire.SpreadQuery{Id: id, Keys: keys}}}) {
			asked = append(asked, name)
		}
	}
	return id, asked, nil
}

// LocalSpread is this node's own answer to a spread query.
func (e *Engine) LocalSpread(keys [][]byte) ([]SpreadEntry, error) {
	out := make([]SpreadEntry, 0, len(keys))
	for _, k := range keys {
		se := SpreadEntry{Key: k}
		r, ok, err := e.st.Get(k)
		if err != nil {
			return nil, fmt.Errorf("engine: spread: read %.64q: %w", k, err)
		}
		if ok {
			se.Present, se.Version, se.Tombstone = true, r.Version, r.Tombstone
			se.Via = e.arrived.via(k, r.Version)
		}
		out = append(out, se)
	}
	return out, nil
}

// stepSpread answers a spread query, or hands a reply to the driver.
func (e *Engine) stepSpread(env *wire.Envelope) error {
	switch b := env.Body.(type) {
	case *wire.Envelope_SpreadQuery:
		q := b.SpreadQuery
		if len(q.Keys) > MaxSpreadKeys {
			return fmt.Errorf("engine: spread query from %s asks %d keys, at most %d", env.From, len(q.Keys), MaxSpreadKeys)
		}
		for _, k := range q.Keys {
			if len(k) == 0 || len(k) > store.MaxKeySize {
				return fmt.Errorf("engine: spread query from %s: key of %d bytes", env.From, len(k))
			}
		}
		entries, err := e.LocalSpread(q.Keys)
		if err != nil {
			return err
		}
		reply := &wire.SpreadReply{Id: q.Id, Entries: make([]*wire.SpreadEntry, len(entries))}
		for i, se := range entries {
			reply.Entries[i] = &wire.SpreadEntry{Key: se.Key, Present: se.Present, Hlc: se.Version.HLC,
				Node: se.Version.Node, Tombstone: se.Tombstone, Via: se.Via}
		}
		e.sendPeerOrAddr(env, &wire.Envelope{Body: &wire.Envelope_SpreadReply{SpreadReply: reply}})
	case *wire.Envelope_SpreadReply:
		r := b.SpreadReply
		if len(r.Entries) > MaxSpreadKeys {
			return fmt.Errorf("engine: spread reply from %s has %d entries, at most %d", env.From, len(r.Entries), MaxSpreadKeys)
		}
		sr := SpreadReply{ID: r.Id, From: env.From, Entries: make([]SpreadEntry, len(r.Entries))}
		for i, w := range r.Entries {
			sr.Entries[i] = SpreadEntry{Key: w.Key, Present: w.Present, Version: store.Version{HLC: w.Hlc, Node: w.Node},
				Tombstone: w.Tombstone, Via: w.Via}
		}
		if len(e.ready.Spread) < maxReadySpread {
			e.ready.Spread = append(e.ready.Spread, sr)
		}
	}
	return nil
}

// maxReadySpread bounds the spread replies held for the driver between two
// calls of Ready.
const maxReadySpread = 1024
