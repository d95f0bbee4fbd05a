package hearsay

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// How the runtime reports a slow disk (docs/ARCHITECTURE.md, failure model
// of the disk). The syncer times every sync that makes a batch durable;
// the latencies of the last syncWindowLen are kept in a bounded histogram
// (syncSlots slots of latencyBins counters, whatever the sync rate). A node
// whose p99 over that window, or whose sync in progress, takes longer than
// Config.SlowSync reports it: /v1/status shows slow_sync and the reason in
// not_ready, and the loop logs it when it starts and at most once per
// slowSyncLogEvery while it lasts. Writes still go on (they wait for their
// syncs); the node recovers by itself once the slow syncs have left the
// window.

// DefaultSlowSync is the sync latency above which a node reports its disk
// as slow when Config.SlowSync is 0.
const DefaultSlowSync = time.Second

// syncWindowLen is the span over which recent sync latencies are judged
// and reported; a variable so that in-package tests can shorten it.
var syncWindowLen = time.Minute

const (
	// syncSlots divides the window; the oldest slot is dropped as a whole.
	syncSlots = 6
	// Latency bins: bin i counts syncs up to latencyBase·2^(i/binsPerOctave);
	// 8 bins an octave make a p99 within 9% of the true value, from
	// 100 µs to 16 minutes.
	latencyBase   = 100 * time.Microsecond
	binsPerOctave = 8
	latencyBins   = 24 * binsPerOctave
	// slowSyncLogEvery bounds how often a slow disk that lasts is logged.
	slowSyncLogEvery = time.Minute
	// syncCheckInterval is how often the loop looks at the sync latency.
	syncCheckInterval = time.Second
)

// SyncLatency describes the store's recent syncs: those that made a batch
// of writes or received records durable, over the last WindowSeconds.
type SyncLatency struct {
	// WindowSeconds is the span the figures cover (60).
	WindowSeconds float64 `json:"window"`
	// Count is the number of syncs in the window.
	Count uint64 `json:"count"`
	// Max and P99 are the slowest sync and the 99th percentile, in seconds
	// (P99 within 9%).
	Max float64 `json:"max"`
	P99 float64 `json:"p99"`
	// Running is how long the sync in progress has been running, in
	// seconds; 0 when none is.
	Running float64 `json:"running,omitempty"`
}

type latencySlot struct {
	start time.Time // zero: unused
	count uint64
	max   time.Duration
	bins  [latencyBins]uint32
}

// syncWatch keeps the recent sync latencies. Its methods are safe for
// concurrent use: the syncer observes, the loop and Status read.
type syncWatch struct {
	mu    sync.Mutex
	slots [syncSlots]latencySlot
	// running is the start (Unix nanoseconds) of the sync in progress, 0
	// when none is.
	running atomic.Int64
	// slow and loggedAt: the loop's view, for logging (loop-owned).
	slow     bool
	loggedAt time.Time
}

func latencyBin(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	i := int(math.Ceil(binsPerOctave * math.Log2(float64(d)/float64(latencyBase))))
	return min(i, latencyBins-1)
}

func binUpper(i int) time.Duration {
	return time.Duration(float64(latencyBase) * math.Exp2(float64(i)/binsPerOctave))
}

// slotLen is the span of one slot.
func slotLen() time.Duration { return syncWindowLen / syncSlots }

// begin and end bracket a sync.
func (w *syncWatch) begin(now time.Time) { w.running.Store(now.UnixNano()) }
func (w *syncWatch) end()                { w.running.Store(0) }

// observe records a sync of duration d that ended at now.
func (w *syncWatch) observe(now time.Time, d time.Duration) {
	start := now.Truncate(slotLen())
	s := &w.slots[(start.UnixNano()/int64(slotLen()))%syncSlots]
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.start.Equal(start) {
		*s = latencySlot{start: start}
	}
	s.count++
	s.max = max(s.max, d)
	s.bins[latencyBin(d)]++
}

// stats sums the slots of the window that ends at now.
func (w *syncWatch) stats(now time.Time) SyncLatency {
	out := SyncLatency{WindowSeconds: syncWindowLen.Seconds()}
	if r := w.running.Load(); r != 0 {
		out.Running = max(now.Sub(time.Unix(0, r)), 0).Seconds()
	}
	var bins [latencyBins]uint64
	var slowest time.Duration
	w.mu.Lock()
	for i := range w.slots {
		s := &w.slots[i]
		if s.start.IsZero() || now.Sub(s.start) >= syncWindowLen {
			continue
		}
		out.Count += s.count
		slowest = max(slowest, s.max)
		for b, c := range s.bins {
			bins[b] += uint64(c)
		}
	}
	w.mu.Unlock()
	out.Max = slowest.Seconds()
	if out.Count == 0 {
		return out
	}
	// The 99th percentile: the bin holding the ceil(0.99·count)-th sync,
	// fastest first; its upper bound, but never above the slowest seen.
	rank := (out.Count*99 + 99) / 100
	var seen uint64
	for b, c := range bins {
		seen += c
		if seen >= rank {
			out.P99 = min(binUpper(b), slowest).Seconds()
			break
		}
	}
	return out
}

// slowSyncReason returns why the node's syncs count as slow, or "".
func (n *Node) slowSyncReason(l SyncLatency) string {
	bound := n.slowSync
	if bound <= 0 {
		return ""
	}
	switch {
	case l.Running > bound.Seconds():
		return fmt.Sprintf("disk: slow syncs: the sync in progress has run for %s, above --slow-sync %s; writes wait for it",
			secs(l.Running), bound)
	case l.Count > 0 && l.P99 > bound.Seconds():
		return fmt.Sprintf("disk: slow syncs: p99 %s over the last %s (max %s, %d syncs), above --slow-sync %s; writes wait for them",
			secs(l.P99), syncWindowLen, secs(l.Max), l.Count, bound)
	}
	return ""
}

func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

// watchSync logs when the node's syncs become slow, at most once per
// slowSyncLogEvery while they stay slow, and when they are fast again;
// loop-owned. It returns when it wants to run next.
func (n *Node) watchSync(now time.Time) time.Time {
	if _, ok := n.raw.(diskStore); !ok || n.slowSync <= 0 {
		return time.Time{}
	}
	w := &n.syncWatch
	if now.Before(n.syncNext) {
		return n.syncNext
	}
	n.syncNext = now.Add(syncCheckInterval)
	l := w.stats(now)
	reason := n.slowSyncReason(l)
	switch {
	case reason != "" && (!w.slow || now.Sub(w.loggedAt) >= slowSyncLogEvery):
		n.log.Warn("slow disk: syncs are slower than --slow-sync; writes wait for them, membership does not", "reason", reason)
		w.slow, w.loggedAt = true, now
	case reason == "" && w.slow:
		n.log.Info("syncs are fast again", "p99", secs(l.P99), "max", secs(l.Max), "syncs", l.Count, "window", syncWindowLen)
		w.slow = false
	}
	return n.syncNext
}
