package hearsay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/driver"
	"github.com/hearsaydb/hearsay/store"
)

// How the runtime treats its disk (docs/ARCHITECTURE.md, failure model).
//
// Free space is checked (statfs) every diskCheckInterval against
// Config.MinFreeDisk. Below it, or once the store has met ENOSPC, the node
// refuses local writes at once with ErrNoSpace, stops applying replicated
// records (so they are not acknowledged, and stay in their senders'
// outboxes or are repaired later by anti-entropy), keeps serving reads,
// watches and membership, and says why it is not ready. Once free space is
// back above the watermark, it recovers the store (reopening it if a commit
// failed) and takes writes again by itself.
//
// A failed sync for any other reason is fail-stop: the node refuses every
// write from then on, acknowledges nothing more, and stays up read-only and
// not ready until it is restarted, which recovers what is durable.

const (
	// diskCheckInterval is how often free space is checked while writes
	// are taken. statfs costs about a microsecond.
	diskCheckInterval = 250 * time.Millisecond
	// diskRecheckInterval is how often a node refusing writes for lack of
	// space checks whether space came back: slowly, so a full disk costs no
	// CPU.
	diskRecheckInterval = time.Second
	// minFreeToResume is the least free space at which a store that met
	// ENOSPC is recovered, whatever Config.MinFreeDisk: room for the
	// store's reserve file (8 MiB, put back by Recover) and a few memtable
	// flushes, so that it does not fill again at once.
	minFreeToResume = 16 << 20
	// storageLogInterval bounds how often the same storage error is logged.
	storageLogInterval = time.Second
)

// diskStore is what a durable store offers beyond store.Store: its volume's
// free space, its own view of its health, and recovery after a full disk
// (pebblestore.Store).
type diskStore interface {
	DiskUsage() (avail, total uint64, err error)
	Health() error
	Recover() error
}

// DefaultMinFreeDisk returns the free-space watermark used when
// Config.MinFreeDisk is 0, for a volume of total bytes: the larger of
// 256 MiB and 2% of the volume (as etcd's NOSPACE alarm and Elasticsearch's
// flood-stage watermark keep a reserve).
func DefaultMinFreeDisk(total uint64) uint64 {
	return max(256<<20, total/50)
}

// guardedStore is the store the engine writes through: it refuses new
// records while the node is out of space or failed, before they reach the
// store, so that nothing is applied (and so acknowledged) that the node
// cannot keep.
type guardedStore struct {
	store.Store
	n *Node
}

func (g guardedStore) Apply(recs []store.Record) ([]bool, error) {
	if err := g.n.writeRefusal(); err != nil {
		return nil, err
	}
	return g.Store.Apply(recs)
}

func (g guardedStore) SetMeta(key, value []byte) error {
	if r := g.n.failed.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrStorageFailed, *r)
	}
	return g.Store.SetMeta(key, value)
}

func (g guardedStore) Remove(key []byte, v store.Version) error {
	if r := g.n.failed.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrStorageFailed, *r)
	}
	return g.Store.Remove(key, v)
}

func (g guardedStore) Sync() error {
	if r := g.n.failed.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrStorageFailed, *r)
	}
	return g.Store.Sync()
}

// writeRefusal returns why the node refuses writes now, or nil.
func (n *Node) writeRefusal() error {
	if r := n.failed.Load(); r != nil {
		return fmt.Errorf("hearsay: write refused: %w: %s", ErrStorageFailed, *r)
	}
	if r := n.noSpace.Load(); r != nil {
		return fmt.Errorf("hearsay: write refused: %w: %s", ErrNoSpace, *r)
	}
	return nil
}

// checkDisk compares free space with the watermark and the store's health,
// and moves the node in or out of the no-space state; loop-owned. It
// returns when it wants to run next.
func (n *Node) checkDisk(now time.Time) time.Time {
	ds, ok := n.raw.(diskStore)
	if !ok || n.failed.Load() != nil {
		return time.Time{}
	}
	if now.Before(n.diskNext) {
		return n.diskNext
	}
	interval := diskCheckInterval
	defer func() { n.diskNext = now.Add(interval) }()
	health := ds.Health()
	if health != nil && !errors.Is(health, store.ErrNoSpace) {
		n.failStop(health)
		return time.Time{}
	}
	avail, total, err := ds.DiskUsage()
	if err != nil {
		n.storageLog.log(n.log, slog.LevelWarn, "cannot read free space", "err", err)
		return now.Add(interval)
	}
	_ = total
	n.diskAvail.Store(avail)
	low := n.minFree > 0 && avail < n.minFree
	switch {
	case low:
		n.setNoSpace(fmt.Sprintf("disk: free space %s below --min-free-disk %s; writes refused until space is freed", mib(avail), mib(n.minFree)))
	case health != nil && avail < max(n.minFree, minFreeToResume):
		n.setNoSpace(fmt.Sprintf("disk: full (ENOSPC) in %s, %s free; writes refused until space is freed", n.cfg.DataDir, mib(avail)))
	case health != nil:
		// The store met ENOSPC, and there is room again.
		if err := ds.Recover(); err != nil {
			n.setNoSpace(fmt.Sprintf("disk: full (%v); writes refused until the store recovers", err))
			if errors.Is(err, store.ErrFailed) {
				n.failStop(err)
			}
		} else {
			n.clearNoSpace(avail)
		}
	default:
		n.clearNoSpace(avail)
	}
	if n.noSpace.Load() != nil {
		interval = diskRecheckInterval
	}
	return now.Add(interval)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// setNoSpace enters (or updates) the no-space state.
func (n *Node) setNoSpace(reason string) {
	if prev := n.noSpace.Swap(&reason); prev == nil || *prev != reason && !strings.HasPrefix(reason, "disk: free space") {
		n.log.Warn("disk full: refusing writes; reads, watches and membership go on", "reason", reason)
	}
}

func (n *Node) clearNoSpace(avail uint64) {
	if prev := n.noSpace.Swap(nil); prev != nil {
		n.log.Info("disk has room again: taking writes", "free", mib(avail), "min_free", mib(n.minFree))
	}
}

// failStop enters the failed state for good: every write refused, nothing
// more acknowledged, not ready, until the process restarts.
func (n *Node) failStop(err error) {
	reason := fmt.Sprintf("storage failed: %v; node is read-only until restarted", err)
	if n.failed.CompareAndSwap(nil, &reason) {
		n.log.Error("storage failed: refusing every write until restarted; a restart recovers what is durable", "err", err)
	}
}

// storageFailure sorts an error of the store: ENOSPC enters the no-space
// state (the disk check recovers from it), anything else is fail-stop.
func (n *Node) storageFailure(err error) {
	if errors.Is(err, store.ErrNoSpace) {
		if n.noSpace.Load() != nil {
			return
		}
		n.setNoSpace(fmt.Sprintf("disk: full (ENOSPC) in %s; writes refused until space is freed", n.cfg.DataDir))
		return
	}
	if errors.Is(err, ErrStorageFailed) && n.failed.Load() != nil {
		return
	}
	n.failStop(err)
}

// isStorageError reports whether err comes from a full or failed store;
// such errors repeat for every message and tick, so they are logged through
// a throttle.
func isStorageError(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, ErrStorageFailed)
}

// logThrottle logs at most once per storageLogInterval and counts what it
// held back.
type logThrottle struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (t *logThrottle) log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	t.mu.Lock()
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < storageLogInterval {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	n := t.suppressed
	t.last, t.suppressed = now, 0
	t.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.Log(context.Background(), level, msg, args...)
}

// syncer makes batches durable and then releases what waited for it, apart
// from the event loop, so that the loop keeps stepping messages (and
// answering probes) while the disk syncs: etcd raft's asynchronous storage
// writes. Work queued while a sync runs is covered by the next one, so
// batches share fsyncs whatever the disk's speed. It runs until the loop has
// stopped and its last work is done.
func (n *Node) syncer() {
	defer close(n.syncDone)
	for {
		select {
		case <-n.syncKick:
		case <-n.done:
			n.syncOnce()
			return
		}
		n.syncOnce()
	}
}

// kickSync wakes the syncer: the loop has committed a batch.
func (n *Node) kickSync() {
	select {
	case n.syncKick <- struct{}{}:
	default:
	}
}

func (n *Node) syncOnce() {
	work := n.core.TakeSync()
	if len(work) == 0 {
		return
	}
	// Everything applied before the sync is durable after it: the work
	// taken and whatever the loop applied since.
	rev := n.raw.Revision()
	start := time.Now()
	n.syncWatch.begin(start)
	err := n.st.Sync()
	n.syncWatch.end()
	end := time.Now()
	d := end.Sub(start)
	n.metrics.syncSeconds.Observe(d.Seconds())
	if hasWork(work) {
		// A sync with nothing to make durable costs no fsync: it would
		// hide slow ones.
		n.syncWatch.observe(end, d)
	}
	if err != nil {
		if !errors.Is(err, store.ErrNoSpace) && !errors.Is(err, ErrStorageFailed) {
			err = fmt.Errorf("%w: %w", ErrStorageFailed, err)
		}
		n.storageFailure(err)
		n.storageLog.log(n.log, slog.LevelError, "store sync failed: writes of this batch are not acknowledged, its messages not sent", "err", err)
		n.core.Release(work, err)
		return
	}
	n.durableRev.Store(max(n.durableRev.Load(), rev)) // the syncer is its only writer
	// Durable now: the core acknowledges first, then announces and sends.
	// A write waits for its own sync, not for its copies to reach every
	// peer (a 1 MiB value mailed to 15 peers is 15 MiB to hand to the
	// transport).
	n.core.Release(work, nil)
}

// runtimeOutputs is where the runtime's driver core releases: the
// transport, and the watchers.
type runtimeOutputs struct{ n *Node }

func (o runtimeOutputs) Send(msgs []engine.Message)     { o.n.send(msgs) }
func (o runtimeOutputs) Durable(changes []store.Record) { o.n.notify(changes) }

// send hands messages to the transport.
func (n *Node) send(msgs []engine.Message) {
	if outgoingHook != nil {
		msgs = outgoingHook(msgs)
	}
	for _, m := range msgs {
		if tamperSend != nil {
			tamperSend(m.Env)
		}
		kind := m.Env.Kind()
		size, err := n.tr.Send(m.To, m.Env)
		if err != nil {
			n.metrics.sendErrors.WithLabelValues(kind).Inc()
			n.log.Debug("send failed", "to", m.To, "kind", kind, "err", err)
			continue
		}
		n.metrics.sent.WithLabelValues(kind).Inc()
		n.metrics.sentBytes.WithLabelValues(kind).Add(float64(size))
		n.traffic.sent(m.Env, size)
	}
}

// hasWork reports whether any of work waits for durability: writes to
// acknowledge, changes to announce, messages to send.
func hasWork(work []driver.Work) bool {
	for i := range work {
		if !work[i].Empty() {
			return true
		}
	}
	return false
}

// wrapStore, when set (only by test builds with the faultinject tag),
// wraps the store a node opens: slow or failing syncs for real-process
// tests.
var wrapStore func(store.Store, *slog.Logger) store.Store

// initDisk resolves the free-space watermark and checks the disk once
// before the node takes its first write.
func (n *Node) initDisk() {
	ds, ok := n.raw.(diskStore)
	if !ok {
		return
	}
	switch {
	case n.cfg.MinFreeDisk > 0:
		n.minFree = uint64(n.cfg.MinFreeDisk)
	case n.cfg.MinFreeDisk == 0:
		if _, total, err := ds.DiskUsage(); err == nil {
			n.minFree = DefaultMinFreeDisk(total)
			if n.minFree >= total/2 {
				n.log.Warn("the default --min-free-disk is most of this small volume; set it explicitly", "min_free", mib(n.minFree), "volume", mib(total))
			}
		}
	}
	n.checkDisk(time.Now())
}
