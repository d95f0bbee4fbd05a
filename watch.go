package hearsay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearsaydb/hearsay/store"
)

// watchBuffer is how many events a watcher may fall behind before it is cut
// off: the node never waits for a slow watcher.
const watchBuffer = 4096

type watcher struct {
	prefix []byte
	ch     chan Event
}

// WatchOption changes where a watch starts (see Since).
type WatchOption func(*watchOptions)

type watchOptions struct {
	resume bool
	since  uint64
	nodeID string
}

// Since makes Watch start with the changes this node applied after
// revision rev (Event.Revision; Revision returns the current one), then go
// on with new changes, with no change missed or repeated in between: how a
// watcher that was cut off, or whose program restarted, resumes. Since(0)
// starts from the first change.
//
// The changes come from the node's change log, which is bounded
// (Config.ChangeLog). When it no longer reaches back to rev, or rev is
// beyond this node's revision (it was another node's, or this node's data
// directory was started afresh), the watch starts instead with a snapshot
// of the current records under the prefix, tombstones included, as
// events with Snapshot set and Revision 0, ended by an event with Snapshot
// set, no key and the revision the snapshot is as new as; keys that
// are not in the snapshot have no record. A record changed while the
// snapshot is read may come both in it and after it, with the same version.
func Since(rev uint64) WatchOption {
	return func(o *watchOptions) { o.resume, o.since = true, rev }
}

// SinceNode is Since for a revision given by the node whose id is nodeID
// (Status.NodeID): revisions are numbered by each node on its own, so on
// any other node the watch starts with a snapshot.
func SinceNode(nodeID string, rev uint64) WatchOption {
	return func(o *watchOptions) { o.resume, o.since, o.nodeID = true, rev, nodeID }
}

// Revision returns the revision of the last change this node applied and
// made durable: every change it applies, written here or received, gets
// the next revision, kept in the store with the change. Revisions belong
// to this node (another node numbers the same changes otherwise) and never
// go backwards, across restarts included (unless Config.NoSync lost
// writes to a power failure).
func (n *Node) Revision() uint64 { return n.durableRev.Load() }

// Watch streams every change to keys with the given prefix, local or learned
// from peers, until ctx is done; then the channel is closed. Each event
// carries the change's revision. A watcher that falls more than a few
// thousand events behind is cut off rather than slowing the node: its
// channel is closed early, and the caller should Watch again with
// Since(the last revision it got) to resume where it stopped.
//
// Without options the watch starts with the changes made from now on;
// Since and SinceNode make it start from an earlier revision.
func (n *Node) Watch(ctx context.Context, prefix []byte, opts ...WatchOption) (<-chan Event, error) {
	if err := n.usable(); err != nil {
		return nil, err
	}
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	w := &watcher{prefix: bytes.Clone(prefix), ch: make(chan Event, watchBuffer)}
	n.watchMu.Lock()
	if n.watchers == nil {
		n.watchMu.Unlock()
		return nil, ErrClosed
	}
	n.watchers[w] = struct{}{}
	n.watchMu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-n.closing:
		}
		n.dropWatcher(w)
	}()
	if !o.resume {
		return w.ch, nil
	}
	out := make(chan Event)
	go n.resume(ctx, w, o, out)
	return out, nil
}

// resume sends what w missed since o.since (from the change log, or a
// snapshot), then w's live events after it, to out; it closes out when w
// ends or ctx is done.
//
// w is registered before the durable revision r0 is read, so every change
// after r0 reaches w (its sync ends after the read); the replay covers
// o.since to r0, and live events at or below r0 are skipped.
func (n *Node) resume(ctx context.Context, w *watcher, o watchOptions, out chan<- Event) {
	defer close(out)
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
		case <-n.closing:
		}
		return false
	}
	r0 := n.durableRev.Load()
	last := o.since
	snapshot := o.since > r0 || o.nodeID != "" && o.nodeID != fmt.Sprintf("%016x", n.nodeID)
	if !snapshot {
		ok := true
		err := n.raw.Changes(o.since, func(r store.Record) bool {
			if r.Revision > r0 {
				return false
			}
			last = r.Revision
			if bytes.HasPrefix(r.Key, w.prefix) {
				ok = send(eventOf(r))
			}
			return ok
		})
		switch {
		case !ok:
			return
		case errors.Is(err, store.ErrCompacted):
			snapshot = true
		case err != nil:
			if !n.isClosing() {
				n.log.Warn("watch: cannot read the change log; ending the watch", "since", o.since, "err", err)
			}
			return
		default:
			last = r0
			n.watchStats.fromLog.Add(1)
		}
	}
	if snapshot {
		n.watchStats.snapshots.Add(1)
		r0 = n.durableRev.Load()
		ok := true
		err := n.raw.Scan(w.prefix, nil, func(r store.Record) bool {
			ev := eventOf(r)
			ev.Snapshot = true
			ok = send(ev)
			return ok
		})
		if !ok {
			return
		}
		if err != nil {
			if !n.isClosing() {
				n.log.Warn("watch: cannot read the snapshot; ending the watch", "err", err)
			}
			return
		}
		if !send(Event{Snapshot: true, Revision: r0}) {
			return
		}
		last = r0
	}
	for ev := range w.ch {
		if ev.Revision <= last {
			continue
		}
		if !send(ev) {
			return
		}
		last = ev.Revision
	}
}

func (n *Node) isClosing() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

func eventOf(r store.Record) Event {
	return Event{Key: r.Key, Value: r.Value, Version: r.Version, Deleted: r.Tombstone, Revision: r.Revision}
}

func (n *Node) dropWatcher(w *watcher) {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	if _, ok := n.watchers[w]; ok {
		delete(n.watchers, w)
		close(w.ch)
	}
}

// notify delivers durable changes to the watchers whose prefix matches.
func (n *Node) notify(changes []store.Record) {
	if len(changes) == 0 {
		return
	}
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	for w := range n.watchers {
		for _, r := range changes {
			if !bytes.HasPrefix(r.Key, w.prefix) {
				continue
			}
			select {
			case w.ch <- eventOf(r):
			default:
				n.log.Warn("watcher fell behind; closing it", "prefix", string(w.prefix))
				n.watchStats.cutOff.Add(1)
				delete(n.watchers, w)
				close(w.ch)
			}
			if _, ok := n.watchers[w]; !ok {
				break
			}
		}
	}
}

func (n *Node) closeWatchers() {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	for w := range n.watchers {
		close(w.ch)
	}
	n.watchers = nil
}

// watchStats count how watches started and ended.
type watchStats struct {
	fromLog, snapshots, cutOff atomic.Uint64
}

// watchCollector exposes the change log and the watch counters.
type watchCollector struct{ n *Node }

var (
	descRevision      = desc("revision", "Revision of the last change this node applied and made durable (watch events' ids).")
	descLogFirst      = desc("changelog_first_revision", "Oldest revision the change log holds (0: none); watches resuming from before it get a snapshot.")
	descLogEntries    = desc("changelog_entries", "Changes held in the change log (bounded by --change-log-entries).")
	descLogBytes      = desc("changelog_bytes", "Bytes of changes held in the change log (bounded by --change-log-bytes).")
	descWatchResumes  = desc("watch_resumes_total", "Watches that resumed from a revision, by how: replayed from the change log (log), or by a snapshot of the current values (snapshot).", "from")
	descWatchersCut   = desc("watchers_cut_off_total", "Watchers closed because they fell too far behind.")
	watchCollectorAll = []*prometheus.Desc{descRevision, descLogFirst, descLogEntries, descLogBytes, descWatchResumes, descWatchersCut}
)

func (c watchCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range watchCollectorAll {
		ch <- d
	}
}

func (c watchCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.raw.ChangeLog()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descRevision, float64(c.n.durableRev.Load()))
	gauge(descLogFirst, float64(st.First))
	gauge(descLogEntries, float64(st.Entries))
	gauge(descLogBytes, float64(st.Bytes))
	s := &c.n.watchStats
	ch <- prometheus.MustNewConstMetric(descWatchResumes, prometheus.CounterValue, float64(s.fromLog.Load()), "log")
	ch <- prometheus.MustNewConstMetric(descWatchResumes, prometheus.CounterValue, float64(s.snapshots.Load()), "snapshot")
	ch <- prometheus.MustNewConstMetric(descWatchersCut, prometheus.CounterValue, float64(s.cutOff.Load()))
}
