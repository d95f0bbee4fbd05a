package hearsay

import (
	"github.com/prometheus/client_golang/prometheus"
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
	m.cs = []prometheus.Collector{m.writes, m.received, m.receivedBytes, m.sent, m.sentBytes, m.sendErrors, m.syncSeconds, &collector{n: n}}
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

// collector exposes the engine's and the transport's own counters.
type collector struct{ n *Node }

var (
	descMembers        = prometheus.NewDesc("hearsay_members", "Members in this node's view, by state.", []string{"state"}, nil)
	descRecordsRecv    = prometheus.NewDesc("hearsay_records_received_total", "Records received from peers by any mechanism.", nil, nil)
	descRecordsApplied = prometheus.NewDesc("hearsay_records_applied_total", "Received records that changed the store.", nil, nil)
	descRecordsRefused = prometheus.NewDesc("hearsay_records_refused_total", "Received records refused (size limits, clock skew).", nil, nil)
	descRefused        = prometheus.NewDesc("hearsay_messages_refused_total", "Messages refused by the protocol (foreign cluster, anonymous).", nil, nil)
	descMail           = prometheus.NewDesc("hearsay_directmail_total", "Direct-mail activity, by event.", []string{"event"}, nil)
	descOutbox         = prometheus.NewDesc("hearsay_directmail_outbox_records", "Records waiting in direct-mail outboxes, over all peers.", nil, nil)
	descOutboxBytes    = prometheus.NewDesc("hearsay_directmail_outbox_bytes", "Bytes waiting in direct-mail outboxes, over all peers.", nil, nil)
	descRumor          = prometheus.NewDesc("hearsay_rumor_total", "Rumor-mongering activity, by event.", []string{"event"}, nil)
	descRumorHot       = prometheus.NewDesc("hearsay_rumor_hot", "Hot rumors: updates this node is spreading now.", nil, nil)
	descAE             = prometheus.NewDesc("hearsay_antientropy_total", "Anti-entropy activity, by event.", []string{"event"}, nil)
	descAEActive       = prometheus.NewDesc("hearsay_antientropy_active", "Anti-entropy exchanges in progress.", nil, nil)
	descTransport      = prometheus.NewDesc("hearsay_transport_total", "Transport counters, by event.", []string{"event"}, nil)
	descDetector       = prometheus.NewDesc("hearsay_failure_detector_total", "Failure detector activity, by event.", []string{"event"}, nil)
	descConns          = prometheus.NewDesc("hearsay_transport_connections", "Accepted gossip TCP connections open now (bounded by --max-gossip-conns).", nil, nil)
	descMembersRefused = prometheus.NewDesc("hearsay_members_refused_total", "New members refused: the view was full (reason full, --max-members) or their sender's allowance for the second was spent (reason rate).", []string{"reason"}, nil)
	descLocalHealth    = prometheus.NewDesc("hearsay_local_health", "Local health score (Lifeguard): 0 when this node keeps up; probe timers are stretched by score+1.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descRecordsRecv, descRecordsApplied, descRecordsRefused, descRefused, descMail, descOutbox, descOutboxBytes, descRumor, descRumorHot, descAE, descAEActive, descTransport, descDetector, descLocalHealth, descConns, descMembersRefused} {
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
	counter(descRecordsRecv, e.RecordsReceived)
	counter(descRecordsApplied, e.RecordsApplied)
	counter(descRecordsRefused, e.RecordsRefused)
	counter(descRefused, e.Refused)
	counter(descMail, e.Mail.MailsSent, "sent")
	counter(descMail, e.Mail.Retries, "retried")
	counter(descMail, e.Mail.Acked, "acked")
	counter(descMail, e.Mail.TimedOut, "timed_out")
	counter(descMail, e.Mail.Queued, "queued")
	counter(descMail, e.Mail.Dropped, "dropped")
	r := e.Rumor
	for _, kv := range []struct {
		name string
		v    uint64
	}{
		{"messages", r.Messages}, {"updates", r.Updates}, {"announced", r.Announced}, {"pulls", r.Pulls},
		{"fetches", r.Fetches}, {"added", r.Added}, {"lost_interest", r.LostInterest},
		{"dropped_age", r.DroppedAge}, {"dropped_full", r.DroppedFull},
	} {
		counter(descRumor, kv.v, kv.name)
	}
	ch <- prometheus.MustNewConstMetric(descRumorHot, prometheus.GaugeValue, float64(r.Hot))
	a := e.AntiEntropy
	for _, kv := range []struct {
		name string
		v    uint64
	}{
		{"started", a.Started}, {"completed", a.Completed}, {"served", a.Served}, {"in_sync", a.InSync},
		{"stalled", a.Stalled}, {"busy", a.Busy}, {"errors", a.Errors}, {"bad_digests", a.BadDigests},
		{"full_fallbacks", a.FullFallbacks}, {"cells_sent", a.CellsSent}, {"records_sent", a.RecordsSent},
		{"records_received", a.RecordsRecv}, {"repaired", a.Repaired}, {"tombstones_collected", a.Collected},
		{"dropped_on_recovery", a.Dropped}, {"recovered", a.Recovered}, {"isolated", a.Isolated},
	} {
		counter(descAE, kv.v, kv.name)
	}
	ch <- prometheus.MustNewConstMetric(descAEActive, prometheus.GaugeValue, float64(a.Active))
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(e.Mail.OutboxRecords))
	ch <- prometheus.MustNewConstMetric(descOutboxBytes, prometheus.GaugeValue, float64(e.Mail.OutboxBytes))
	fd := e.Members
	for _, kv := range []struct {
		name string
		v    uint64
	}{
		{"probes", fd.Probes}, {"probes_failed", fd.ProbesFailed}, {"ping_reqs", fd.PingReqs},
		{"nacks_received", fd.NacksReceived}, {"relayed", fd.Relayed}, {"nacks_sent", fd.NacksSent},
		{"suspected", fd.Suspected}, {"refuted", fd.Refuted}, {"declared_dead", fd.Declared},
		{"reconnects", fd.Reconnects}, {"reaped", fd.Reaped},
	} {
		counter(descDetector, kv.v, kv.name)
	}
	ch <- prometheus.MustNewConstMetric(descLocalHealth, prometheus.GaugeValue, float64(fd.Health))
	counter(descMembersRefused, fd.MembersRefused, "full")
	counter(descMembersRefused, fd.MembersLimited, "rate")
	t := c.n.tr.Stats()
	for _, kv := range []struct {
		name string
		v    uint64
	}{
		{"packets_sent", t.PacketsSent}, {"packets_received", t.PacketsReceived},
		{"bytes_sent", t.BytesSent}, {"bytes_received", t.BytesReceived},
		{"stream_frames_sent", t.StreamFramesSent}, {"stream_frames_received", t.StreamFramesReceived},
		{"decode_errors", t.DecodeErrors}, {"version_errors", t.VersionErrors}, {"auth_errors", t.AuthErrors},
		{"dropped", t.Dropped}, {"dial_failures", t.DialFailures}, {"inbox_dropped", t.InboxDropped},
		{"refusals_sent", t.RefusalsSent}, {"refusals_limited", t.RefusalsLimited}, {"refusals_received", t.RefusalsReceived},
		{"connections_rejected", t.ConnsRejected}, {"pre_auth_refused", t.PreAuthRefused}, {"frame_timeouts", t.FrameTimeouts},
	} {
		counter(descTransport, kv.v, kv.name)
	}
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(t.ConnsOpen))
}
