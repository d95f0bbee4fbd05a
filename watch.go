package hearsay

import (
	"bytes"
	"context"

	"github.com/hearsaydb/hearsay/store"
)

// watchBuffer is how many events a watcher may fall behind before it is cut
// off: the node never waits for a slow watcher.
const watchBuffer = 4096

type watcher struct {
	prefix []byte
	ch     chan Event
}

// Watch streams every change to keys with the given prefix, local or learned
// from peers, until ctx is done; then the channel is closed. A watcher that
// falls more than a few thousand events behind is cut off rather than
// slowing the node: its channel is closed early, and the caller should Scan
// and Watch again.
func (n *Node) Watch(ctx context.Context, prefix []byte) (<-chan Event, error) {
	if err := n.usable(); err != nil {
		return nil, err
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
	return w.ch, nil
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
			ev := Event{Key: r.Key, Value: r.Value, Version: r.Version, Deleted: r.Tombstone}
			select {
			case w.ch <- ev:
			default:
				n.log.Warn("watcher fell behind; closing it", "prefix", string(w.prefix))
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
