package hearsay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/trust"
)

// metrics are the node's Prometheus instruments. Counters kept by the
// engine and the transport are read at scrape time by a collector, so the
// hot path pays nothing for them.
type metrics struct {
	reg           prometheus.Registerer
	cs            []prometheus.Collector
	writes        prometheus.Counter
	received      *prometheus.CounterVec
	receivedBytes *prometheus.CounterVec
	sent          *prometheus.CounterVec
	sentBytes     *prometheus.CounterVec
	sendErrors    *prometheus.CounterVec
	syncSeconds   prometheus.Histogram
	keyOps        *prometheus.CounterVec
	keyDropped    prometheus.Counter
}

func newMetrics(n *Node, reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearsay_local_writes_total", Help: "Writes and deletes accepted from this node's clients.",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearsay_messages_received_total", Help: "Gossip messages received, by kind.",
		}, []string{"kind"}),
		receivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearsay_message_bytes_received_total", Help: "Bytes of gossip messages received, by kind.",
		}, []string{"kind"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearsay_messages_sent_total", Help: "Gossip messages sent, by kind.",
		}, []string{"kind"}),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearsay_message_bytes_sent_total", Help: "Bytes of gossip messages sent, by kind.",
		}, []string{"kind"}),
		sendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearsay_message_send_errors_total", Help: "Gossip messages the transport refused to send, by kind.",
		}, []string{"kind"}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hearsay_store_sync_seconds", Help: "Time to make one batch of writes durable (group commit).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	m.keyOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearsay_keyring_operations_total", Help: "Key operations (hearsay keys) this node ran across the cluster, by operation and result (ok, incomplete).",
	}, []string{"op", "result"})
	m.keyDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hearsay_keyring_requests_dropped_total", Help: "Key operations received from members and dropped because the queue was full (the sender repeats them).",
	})
	keyCount := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hearsay_keyring_keys", Help: "Keys in this node's gossip keyring (0: gossip not encrypted).",
	}, func() float64 {
		if n.keys.ring == nil {
			return 0
		}
		return float64(len(n.keys.ring.IDs()))
	})
	m.cs = []prometheus.Collector{m.writes, m.received, m.receivedBytes, m.sent, m.sentBytes, m.sendErrors, m.syncSeconds, m.keyOps, m.keyDropped, keyCount, &collector{n: n}, watchCollector{n: n}, badFrameCollector{n: n}}
	if reg != nil {
		for _, c := range m.cs {
			if err := reg.Register(c); err != nil {
				n.log.Warn("metric not registered", "err", err)
			}
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.cs {
		m.reg.Unregister(c)
	}
}

// collector exposes the engine's and the transport's own counters. Each
// metric counts one unit (Prometheus conventions): a label partitions it
// into parts that add up (a reason, a role), never into other units.
type collector struct{ n *Node }

// desc makes the description of one of the collector's metrics.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("hearsay_"+name, help, labels, nil)
}

var (
	descMembers        = desc("members", "Members in this node's view, by state.", "state")
	descRecordsRecv    = desc("records_received_total", "Records received from peers by any mechanism.")
	descRecordsApplied = desc("records_applied_total", "Received records that changed the store.")
	descRecordsRefused = desc("records_refused_total", "Received records refused: beyond the size limits or the clock-skew bound (invalid); in a certificate cluster, with a signature missing or not verifying against their origin's certificate (signature), or from an origin whose certificate was not held yet (unknown_origin: asked for, and taken on the retry).", "reason")
	descCerts          = desc("certificates", "Node certificates held to verify records (bounded by twice --max-members); 0 in an unsigned cluster.")
	descCertsRefused   = desc("certificates_refused_total", "Node certificates received that did not verify against the cluster CA.")
	descClaimsRefused  = desc("membership_claims_refused_total", "Membership claims dropped in a certificate cluster before the member view saw them: unsigned (unsigned), signed by a node whose certificate was not held yet (unknown_signer: asked for), or with a signature that does not verify (signature).", "reason")
	descRefused        = desc("messages_refused_total", "Messages refused by the protocol (foreign cluster, anonymous).")
	descMembersRefused = desc("members_refused_total", "New members refused: the view was full (reason full, --max-members) or their sender's allowance for the second was spent (reason rate).", "reason")
	descMembersHeld    = desc("members_held_total", "Members learned second-hand, not heard from, held back before being relayed (vouching, see docs/ARCHITECTURE.md, Membership and failure detection).")
	descMembersForgot  = desc("members_forgotten_total", "Members learned second-hand and never heard from, forgotten: every member that vouched for them was quarantined (reason voucher_quarantined) or they did not answer a probe (reason unanswered).", "reason")
	descQuarantined    = desc("quarantined_members", "Peers this node quarantines now: their messages are dropped and they are chosen as no partner.")
	descTrustOffences  = desc("offences_total", "Offences by peers this node observed, by kind (see docs/ARCHITECTURE.md, Peer scoring and quarantine).", "kind")
	descQDropped       = desc("quarantine_dropped_messages_total", "Messages dropped because their sender was quarantined.")
	descRateLimited    = desc("rate_limited_messages_total", "Requests dropped unserved because their sender exceeded its rate limit for the kind (anti-entropy starts, rumor pulls, rumor body fetches; see docs/ARCHITECTURE.md, Peer scoring and quarantine).", "kind")
	descLocalHealth    = desc("local_health", "Local health score (Lifeguard): 0 when this node keeps up; probe timers are stretched by score+1.")

	// Direct mail.
	descMailSent     = desc("directmail_sent_mails_total", "Direct-mail messages sent, first tries and retries.")
	descMailRetried  = desc("directmail_retried_mails_total", "Direct-mail messages sent again from an outbox.")
	descMailAcked    = desc("directmail_acked_mails_total", "Direct-mail messages acknowledged.")
	descMailTimedOut = desc("directmail_timed_out_mails_total", "Direct-mail messages that went unacknowledged.")
	descMailRecords  = desc("directmail_sent_records_total", "Records carried by direct-mail messages.")
	descMailQueued   = desc("directmail_queued_records_total", "Records put into a direct-mail outbox.")
	descMailDropped  = desc("directmail_dropped_records_total", "Records dropped from direct-mail outboxes: outbox full, or peer dead.")
	descOutbox       = desc("directmail_outbox_records", "Records waiting in direct-mail outboxes, over all peers.")
	descOutboxBytes  = desc("directmail_outbox_bytes", "Bytes waiting in direct-mail outboxes, over all peers.")
	descAcksOwed     = desc("directmail_acks_owed_total", "Received direct-mail messages owed an acknowledgement (one per mail).")
	descAckMessages  = desc("directmail_ack_messages_total", "Acknowledgement messages sent for received direct mail (several mails each when batched).")
	descAcksPending  = desc("directmail_acks_pending", "Received direct-mail messages whose acknowledgement is being held to be batched.")

	// Rumor mongering.
	descRumorMessages  = desc("rumor_sent_messages_total", "Rumor messages sent (pushes and pull replies).")
	descRumorUpdates   = desc("rumor_sent_updates_total", "Rumors carried by rumor messages, inline or announced.")
	descRumorAnnounced = desc("rumor_announced_updates_total", "Rumors sent as announcements without their body (part of rumor_sent_updates_total).")
	descRumorPulls     = desc("rumor_pull_requests_total", "Rumor pull requests sent.")
	descRumorFetches   = desc("rumor_fetch_requests_total", "Fetch requests sent for announced rumor bodies.")
	descRumorAdded     = desc("rumor_added_total", "Rumors made hot.")
	descRumorRemoved   = desc("rumor_removed_total", "Hot rumors removed: by the loss-of-interest rule (lost_interest), of old age (age), or because the hot set was full (full).", "reason")
	descRumorHot       = desc("rumor_hot", "Hot rumors: updates this node is spreading now.")

	descTreeSent      = desc("plumtree_sent_messages_total", "Broadcast-tree messages sent, by type: gossip (eager pushes and graft answers), ihave, prune, graft.", "type")
	descTreeRecords   = desc("plumtree_sent_records_total", "Records carried by broadcast-tree gossip messages.")
	descTreeAnnounced = desc("plumtree_announced_total", "Versions named by IHAVE announcements.")
	descTreeDelivered = desc("plumtree_delivered_total", "Records new to this node received by broadcast-tree gossip.")
	descTreeDups      = desc("plumtree_duplicates_total", "Broadcast-tree gossip messages that brought nothing new.")
	descTreeDropped   = desc("plumtree_dropped_total", "What the broadcast tree gave up on: records or versions beyond its queue bound (queue), announcements beyond its missing bound (missing), versions grafted in vain (graft_failed).", "reason")
	descTreePeers     = desc("plumtree_peers", "Peers in this node's broadcast-tree view, by set: eager (tree links) or lazy (announcements).", "set")
	descTreeMissing   = desc("plumtree_missing", "Versions announced to this node and not received yet.")

	// Anti-entropy.
	descAEStarted    = desc("antientropy_started_exchanges_total", "Anti-entropy exchanges this node started.")
	descAECompleted  = desc("antientropy_completed_exchanges_total", "Anti-entropy exchanges completed, by this node's role: initiator (it started them) or responder (a peer did).", "role")
	descAEInSync     = desc("antientropy_in_sync_exchanges_total", "Anti-entropy exchanges (either role) that found equal replicas.")
	descAEFailed     = desc("antientropy_failed_exchanges_total", "Anti-entropy exchanges that did not complete: abandoned after the timeout (stalled), refused as busy by either side (busy), ended by an error from the peer (error).", "reason")
	descAEBadDigests = desc("antientropy_bad_digests_total", "Malformed or inconsistent anti-entropy digests received.")
	descAEFallbacks  = desc("antientropy_full_fallbacks_total", "Anti-entropy exchanges whose differences were too large for the digests, done by full exchange.")
	descAECells      = desc("antientropy_sent_cells_total", "Digest cells sent by anti-entropy.")
	descAERecSent    = desc("antientropy_sent_records_total", "Records sent by anti-entropy.")
	descAERecRecv    = desc("antientropy_received_records_total", "Records received by anti-entropy.")
	descAERepaired   = desc("antientropy_repaired_records_total", "Records received by anti-entropy that changed the store.")
	descAECollected  = desc("antientropy_collected_tombstones_total", "Tombstones collected after the grace period.")
	descAEDropped    = desc("antientropy_recovery_dropped_records_total", "Records a recovering node dropped because they were deleted elsewhere.")
	descAERecovered  = desc("antientropy_recoveries_total", "Recoveries ended by a full pull.")
	descAEIsolated   = desc("antientropy_isolations_total", "Recoveries started because no exchange completed for longer than the tombstone grace period.")
	descAEActive     = desc("antientropy_active", "Anti-entropy exchanges in progress.")

	// Failure detector.
	descProbes       = desc("failure_detector_probes_total", "Direct probes sent.")
	descProbesFailed = desc("failure_detector_failed_probes_total", "Probes answered neither directly nor indirectly.")
	descPingReqs     = desc("failure_detector_indirect_probes_total", "Indirect probe requests sent.")
	descNacksRecv    = desc("failure_detector_received_nacks_total", "Nacks received for indirect probe requests.")
	descRelayed      = desc("failure_detector_relayed_probes_total", "Indirect probes run for other members.")
	descNacksSent    = desc("failure_detector_sent_nacks_total", "Relayed probes answered with a nack.")
	descSuspected    = desc("failure_detector_suspicions_total", "Members this node accused after a failed probe.")
	descRefuted      = desc("failure_detector_refutations_total", "Accusations of this node that it refuted.")
	descDeclared     = desc("failure_detector_declared_dead_total", "Suspects this node's own timer declared dead.")
	descReconnects   = desc("failure_detector_reconnect_pings_total", "Pings sent to dead and left members.")
	descReaped       = desc("failure_detector_reaped_members_total", "Dead or left members forgotten.")
	descPushPulls    = desc("membership_push_pulls_total", "Member-list exchanges started (joins excluded).")
	descJoinsRefused = desc("membership_refused_joins_total", "Joins and member-list exchanges refused for incompatible settings.")

	// Transport.
	descPacketsSent   = desc("transport_sent_packets_total", "UDP datagrams sent.")
	descPacketsRecv   = desc("transport_received_packets_total", "UDP datagrams received and decoded.")
	descBytesSent     = desc("transport_sent_bytes_total", "Frame bytes sent, UDP and TCP.")
	descBytesRecv     = desc("transport_received_bytes_total", "Frame bytes received and decoded, UDP and TCP.")
	descStreamSent    = desc("transport_sent_stream_frames_total", "Frames written to TCP connections.")
	descStreamRecv    = desc("transport_received_stream_frames_total", "Frames decoded from TCP connections.")
	descFramesBad     = desc("transport_rejected_frames_total", "Received frames rejected: malformed, truncated or oversized (decode), of a newer or unknown protocol version (version), failing authentication (auth).", "reason")
	descFramesDropped = desc("transport_dropped_frames_total", "Frames dropped: outgoing ones for a full queue or a failed dial or write (send), received datagrams for a full inbox (receive).", "direction")
	descDialFailures  = desc("transport_dial_failures_total", "Failed TCP dials.")
	descRefusalsSent  = desc("transport_sent_refusals_total", "Refusal notices sent in answer to frames that failed authentication.")
	descRefusalsLim   = desc("transport_limited_refusals_total", "Refusal notices not sent: rate limit, or a datagram too small to answer.")
	descRefusalsRecv  = desc("transport_received_refusals_total", "Refusal notices received.")
	descConns         = desc("transport_connections", "Accepted gossip TCP connections open now (bounded by --max-gossip-conns).")
	descConnsClosed   = desc("transport_closed_connections_total", "Accepted gossip TCP connections closed by a bound: at once for --max-gossip-conns or --max-gossip-conns-per-ip (rejected), for a frame too large before authentication (pre_auth_frame), for a frame too slow to arrive (frame_timeout).", "reason")
)

var collectorDescs = []*prometheus.Desc{
	descMembers, descRecordsRecv, descRecordsApplied, descRecordsRefused, descCerts, descCertsRefused, descClaimsRefused, descRefused, descMembersRefused, descLocalHealth,
	descMembersHeld, descMembersForgot,
	descQuarantined, descTrustOffences, descQDropped, descRateLimited,
	descMailSent, descMailRetried, descMailAcked, descMailTimedOut, descMailRecords, descMailQueued, descMailDropped, descOutbox, descOutboxBytes, descAcksOwed, descAckMessages, descAcksPending,
	descRumorMessages, descRumorUpdates, descRumorAnnounced, descRumorPulls, descRumorFetches, descRumorAdded, descRumorRemoved, descRumorHot,
	descTreeSent, descTreeRecords, descTreeAnnounced, descTreeDelivered, descTreeDups, descTreeDropped, descTreePeers, descTreeMissing,
	descAEStarted, descAECompleted, descAEInSync, descAEFailed, descAEBadDigests, descAEFallbacks, descAECells, descAERecSent, descAERecRecv,
	descAERepaired, descAECollected, descAEDropped, descAERecovered, descAEIsolated, descAEActive,
	descProbes, descProbesFailed, descPingReqs, descNacksRecv, descRelayed, descNacksSent, descSuspected, descRefuted, descDeclared, descReconnects, descReaped, descPushPulls, descJoinsRefused,
	descPacketsSent, descPacketsRecv, descBytesSent, descBytesRecv, descStreamSent, descStreamRecv, descFramesBad, descFramesDropped,
	descDialFailures, descRefusalsSent, descRefusalsLim, descRefusalsRecv, descConns, descConnsClosed,
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range collectorDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.view.Load()
	counts := map[MemberState]int{StateAlive: 0, StateSuspect: 0, StateDead: 0, StateLeft: 0}
	for _, m := range s.members {
		counts[m.State]++
	}
	for st, k := range counts {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(k), string(st))
	}
	e := s.stats
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(descRecordsRecv, e.RecordsReceived)
	counter(descRecordsApplied, e.RecordsApplied)
	counter(descRecordsRefused, e.RecordsRefused-e.SigRefused-e.UnknownSigner-e.RevokedRefused, "invalid")
	counter(descRecordsRefused, e.SigRefused, "signature")
	counter(descRecordsRefused, e.UnknownSigner, "unknown_origin")
	counter(descRecordsRefused, e.RevokedRefused, "revoked_origin")
	gauge(descCerts, e.Certs)
	counter(descCertsRefused, e.CertsRefused)
	counter(descClaimsRefused, e.ClaimsUnsigned, "unsigned")
	counter(descClaimsRefused, e.ClaimsUnknown, "unknown_signer")
	counter(descClaimsRefused, e.ClaimsRefused, "signature")
	counter(descRefused, e.Refused)

	m := e.Mail
	counter(descMailSent, m.MailsSent)
	counter(descMailRetried, m.Retries)
	counter(descMailAcked, m.Acked)
	counter(descMailTimedOut, m.TimedOut)
	counter(descMailRecords, m.RecordsSent)
	counter(descMailQueued, m.Queued)
	counter(descMailDropped, m.Dropped)
	gauge(descOutbox, m.OutboxRecords)
	gauge(descOutboxBytes, m.OutboxBytes)
	counter(descAcksOwed, m.AcksOwed)
	counter(descAckMessages, m.AckMessages)
	gauge(descAcksPending, m.AcksPending)

	r := e.Rumor
	counter(descRumorMessages, r.Messages)
	counter(descRumorUpdates, r.Updates)
	counter(descRumorAnnounced, r.Announced)
	counter(descRumorPulls, r.Pulls)
	counter(descRumorFetches, r.Fetches)
	counter(descRumorAdded, r.Added)
	counter(descRumorRemoved, r.LostInterest, "lost_interest")
	counter(descRumorRemoved, r.DroppedAge, "age")
	counter(descRumorRemoved, r.DroppedFull, "full")
	gauge(descRumorHot, r.Hot)

	pt := e.Tree
	counter(descTreeSent, pt.Gossips, "gossip")
	counter(descTreeSent, pt.IHaves, "ihave")
	counter(descTreeSent, pt.Prunes, "prune")
	counter(descTreeSent, pt.Grafts, "graft")
	counter(descTreeRecords, pt.GossipRecords)
	counter(descTreeAnnounced, pt.IHaveIDs)
	counter(descTreeDelivered, pt.Delivered)
	counter(descTreeDups, pt.Duplicates)
	counter(descTreeDropped, pt.DroppedQueue, "queue")
	counter(descTreeDropped, pt.DroppedMissing, "missing")
	counter(descTreeDropped, pt.GraftFailed, "graft_failed")
	ch <- prometheus.MustNewConstMetric(descTreePeers, prometheus.GaugeValue, float64(pt.Eager), "eager")
	ch <- prometheus.MustNewConstMetric(descTreePeers, prometheus.GaugeValue, float64(pt.Lazy), "lazy")
	gauge(descTreeMissing, pt.Missing)

	a := e.AntiEntropy
	counter(descAEStarted, a.Started)
	counter(descAECompleted, a.Completed, "initiator")
	counter(descAECompleted, a.Served, "responder")
	counter(descAEInSync, a.InSync)
	counter(descAEFailed, a.Stalled, "stalled")
	counter(descAEFailed, a.Busy, "busy")
	counter(descAEFailed, a.Errors, "error")
	counter(descAEBadDigests, a.BadDigests)
	counter(descAEFallbacks, a.FullFallbacks)
	counter(descAECells, a.CellsSent)
	counter(descAERecSent, a.RecordsSent)
	counter(descAERecRecv, a.RecordsRecv)
	counter(descAERepaired, a.Repaired)
	counter(descAECollected, a.Collected)
	counter(descAEDropped, a.Dropped)
	counter(descAERecovered, a.Recovered)
	counter(descAEIsolated, a.Isolated)
	gauge(descAEActive, a.Active)

	fd := e.Members
	counter(descProbes, fd.Probes)
	counter(descProbesFailed, fd.ProbesFailed)
	counter(descPingReqs, fd.PingReqs)
	counter(descNacksRecv, fd.NacksReceived)
	counter(descRelayed, fd.Relayed)
	counter(descNacksSent, fd.NacksSent)
	counter(descSuspected, fd.Suspected)
	counter(descRefuted, fd.Refuted)
	counter(descDeclared, fd.Declared)
	counter(descReconnects, fd.Reconnects)
	counter(descReaped, fd.Reaped)
	counter(descPushPulls, fd.PushPulls)
	counter(descJoinsRefused, fd.JoinsRefused)
	gauge(descLocalHealth, fd.Health)
	counter(descMembersRefused, fd.MembersRefused, "full")
	counter(descMembersRefused, fd.MembersLimited, "rate")
	counter(descMembersHeld, fd.MembersHeld)
	counter(descMembersForgot, fd.ForgottenQuarantined, "voucher_quarantined")
	counter(descMembersForgot, fd.ForgottenUnanswered, "unanswered")

	q := e.Trust
	gauge(descQuarantined, q.Quarantined)
	counter(descQDropped, q.Dropped)
	for _, k := range trust.Kinds {
		counter(descTrustOffences, q.Offences[k], k)
	}
	for _, k := range engine.LimitKinds {
		counter(descRateLimited, q.RateLimited[k], k)
	}

	t := c.n.tr.Stats()
	counter(descPacketsSent, t.PacketsSent)
	counter(descPacketsRecv, t.PacketsReceived)
	counter(descBytesSent, t.BytesSent)
	counter(descBytesRecv, t.BytesReceived)
	counter(descStreamSent, t.StreamFramesSent)
	counter(descStreamRecv, t.StreamFramesReceived)
	counter(descFramesBad, t.DecodeErrors, "decode")
	counter(descFramesBad, t.VersionErrors, "version")
	counter(descFramesBad, t.AuthErrors, "auth")
	counter(descFramesDropped, t.Dropped, "send")
	counter(descFramesDropped, t.InboxDropped, "receive")
	counter(descDialFailures, t.DialFailures)
	counter(descRefusalsSent, t.RefusalsSent)
	counter(descRefusalsLim, t.RefusalsLimited)
	counter(descRefusalsRecv, t.RefusalsReceived)
	counter(descConnsClosed, t.ConnsRejected, "rejected")
	counter(descConnsClosed, t.PreAuthRefused, "pre_auth_frame")
	counter(descConnsClosed, t.FrameTimeouts, "frame_timeout")
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(t.ConnsOpen))
}
