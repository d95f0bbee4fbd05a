package hearsay

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/internal/transport"
)

// badFrame scores the member that a frame the transport refused proves to
// be its sender (transport.BadFrames; which frames prove anything is
// explained in internal/transport/badframe.go): a frame that authenticated
// and then did not decode is an undecodable offence, one that
// authenticated with a node's certificate under another sender's name an
// unauthenticated one. A frame proven only by its UDP source address
// (keyring, no certificates) is held against the member at that gossip
// address, and against nobody when no member has it.
func (n *Node) badFrame(now time.Time, b transport.BadFrame) {
	peer := b.Name
	if peer == "" {
		peer = memberAt(n.view.Load().members, b.Addr)
	}
	if peer == "" || peer == n.cfg.Name {
		n.badFrames.unattributed.Add(1)
		n.log.Debug("bad frame from no member", "from", b.Addr, "kind", b.Kind, "err", b.Err)
		return
	}
	kind := trust.Undecodable
	if b.Kind == transport.BadWrongName {
		kind = trust.Unauthenticated
	}
	if err := n.eng.Offence(now, peer, kind); err != nil {
		n.log.Error("bad frame not scored", "peer", peer, "kind", kind, "err", err)
		return
	}
	n.log.Debug("bad frame scored", "peer", peer, "offence", kind, "proto", b.Proto, "err", b.Err)
}

// memberAt returns the name of the member whose gossip address is addr
// (not this node), or "".
func memberAt(members []Member, addr string) string {
	if addr == "" {
		return ""
	}
	for _, m := range members {
		if m.Address == addr && !m.Self {
			return m.Name
		}
	}
	return ""
}

// badFrameStats counts the bad-frame reports the node could not hold
// against a member.
type badFrameStats struct {
	unattributed atomic.Uint64
}

var (
	descBadReported     = desc("transport_proven_bad_frames_total", "Refused frames that authenticated, so prove their sender, and then did not decode or named another sender: reported to peer scoring (see hearsay_offences_total{kind=\"undecodable\"|\"unauthenticated\"}).")
	descBadDropped      = desc("transport_dropped_bad_frame_reports_total", "Reports of proven bad frames dropped because the transport's report queue (256) was full.")
	descBadUnattributed = desc("transport_unattributed_bad_frames_total", "Proven bad frames whose source address (keyring, no certificates) is the gossip address of no member: scored against nobody.")
)

// badFrameCollector exports the bad-frame counters.
type badFrameCollector struct{ n *Node }

func (c badFrameCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBadReported
	ch <- descBadDropped
	ch <- descBadUnattributed
}

func (c badFrameCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.n.tr.Stats()
	ch <- prometheus.MustNewConstMetric(descBadReported, prometheus.CounterValue, float64(t.BadFramesReported))
	ch <- prometheus.MustNewConstMetric(descBadDropped, prometheus.CounterValue, float64(t.ReportsDropped))
	ch <- prometheus.MustNewConstMetric(descBadUnattributed, prometheus.CounterValue, float64(c.n.badFrames.unattributed.Load()))
}
