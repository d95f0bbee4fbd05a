package hearsay

import (
	"sync/atomic"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Mechanisms, the keys of Traffic.
const (
	MechanismDirectMail  = wire.MechanismDirectMail
	MechanismRumor       = wire.MechanismRumor
	MechanismAntiEntropy = wire.MechanismAntiEntropy
	MechanismMembership  = wire.MechanismMembership
	MechanismObservation = wire.MechanismObservation
)

var mechanisms = [...]string{MechanismDirectMail, MechanismRumor, MechanismAntiEntropy, MechanismMembership, MechanismObservation}

// MechanismTraffic counts the gossip messages of one mechanism since the
// node started, and their bytes on the wire (as framed, before sealing).
type MechanismTraffic struct {
	SentMessages     uint64 `json:"sent_messages"`
	SentBytes        uint64 `json:"sent_bytes"`
	ReceivedMessages uint64 `json:"received_messages"`
	ReceivedBytes    uint64 `json:"received_bytes"`
}

// Traffic is this node's gossip traffic by mechanism: direct mail, rumor
// mongering, anti-entropy, membership (failure detection and joins) and
// observation (spread queries). The same counts, by message kind, are in
// the Prometheus metrics hearsay_messages_*_total.
type Traffic map[string]MechanismTraffic

// trafficCounters is Traffic as atomics, updated by the loop and the syncer.
type trafficCounters [len(mechanisms)][4]atomic.Uint64

func mechanismIndex(env *wire.Envelope) int {
	m := env.Mechanism()
	for i, name := range mechanisms {
		if name == m {
			return i
		}
	}
	return -1
}

func (t *trafficCounters) sent(env *wire.Envelope, size int) {
	if i := mechanismIndex(env); i >= 0 {
		t[i][0].Add(1)
		t[i][1].Add(uint64(size))
	}
}

func (t *trafficCounters) received(env *wire.Envelope, size int) {
	if i := mechanismIndex(env); i >= 0 {
		t[i][2].Add(1)
		t[i][3].Add(uint64(size))
	}
}

// Traffic returns the gossip traffic since the node started, by mechanism.
func (n *Node) Traffic() Traffic {
	out := make(Traffic, len(mechanisms))
	for i, name := range mechanisms {
		c := &n.traffic[i]
		out[name] = MechanismTraffic{SentMessages: c[0].Load(), SentBytes: c[1].Load(), ReceivedMessages: c[2].Load(), ReceivedBytes: c[3].Load()}
	}
	return out
}
