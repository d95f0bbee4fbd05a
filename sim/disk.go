package sim

import (
	"errors"
	"fmt"
	"slices"

	"github.com/hearsaydb/hearsay/store"
)

// Storage fault errors, as a real disk reports them.
var (
	// ErrDiskFull is what a simulated disk out of space returns from Apply.
	ErrDiskFull = fmt.Errorf("sim: disk full: %w", store.ErrNoSpace)
	// ErrDiskIO is what a simulated failing disk returns from Apply or Sync.
	ErrDiskIO = errors.New("sim: disk I/O error")
)

// disk is a simulated node's store as a disk holds it: every Apply, Remove
// and SetMeta is visible at once but durable only once a sync covering it
// completes, and a crash loses what was not durable. It keeps an undo log
// of the changes since the last durable point; rollback replays it
// backwards on the in-memory store. It also injects storage faults: Apply
// refused for lack of space or by an I/O error, a Sync that fails.
//
// The engine never calls Sync: the node's driver marks the log before a
// sync starts (mark) and makes the marked prefix durable when the sync
// completes (commit), as the runtime's group commit does.
type disk struct {
	store.Store // the in-memory replica (memstore)

	undo []undoEntry // changes not yet durable, oldest first
	base int         // log position of undo[0]

	// Faults.
	full      bool // Apply refused: out of space
	applyErr  bool // Apply refused: I/O error
	syncErr   bool // Sync fails
	rollbacks int  // records undone by crashes, for the report
}

// undoEntry is what one change replaced: a key's record (or its absence),
// or a metadata entry.
type undoEntry struct {
	meta bool
	key  []byte
	had  bool
	rec  store.Record
	val  []byte
}

func (d *disk) Apply(recs []store.Record) ([]bool, error) {
	if d.full {
		return nil, ErrDiskFull
	}
	if d.applyErr {
		return nil, fmt.Errorf("apply %d records: %w", len(recs), ErrDiskIO)
	}
	for _, r := range recs {
		cur, ok, err := d.Store.Get(r.Key)
		if err != nil {
			return nil, err
		}
		if ok && !r.Wins(cur) {
			continue // changes nothing
		}
		d.undo = append(d.undo, undoEntry{key: slices.Clone(r.Key), had: ok, rec: cur})
	}
	return d.Store.Apply(recs)
}

func (d *disk) Remove(key []byte, v store.Version) error {
	cur, ok, err := d.Store.Get(key)
	if err != nil {
		return err
	}
	if ok && cur.Version == v {
		d.undo = append(d.undo, undoEntry{key: slices.Clone(key), had: true, rec: cur})
	}
	return d.Store.Remove(key, v)
}

func (d *disk) SetMeta(key, value []byte) error {
	old, ok, err := d.Store.GetMeta(key)
	if err != nil {
		return err
	}
	d.undo = append(d.undo, undoEntry{meta: true, key: slices.Clone(key), had: ok, val: slices.Clone(old)})
	return d.Store.SetMeta(key, value)
}

// Sync makes everything durable at once (the driver uses mark and commit
// instead, to model a sync that takes time).
func (d *disk) Sync() error {
	if d.syncErr {
		return fmt.Errorf("sync: %w", ErrDiskIO)
	}
	d.commit(d.mark())
	return nil
}

// mark returns the log position a sync started now would make durable.
func (d *disk) mark() int { return d.base + len(d.undo) }

// commit makes the changes before log position p durable.
func (d *disk) commit(p int) {
	if n := p - d.base; n > 0 {
		d.undo = slices.Delete(d.undo, 0, min(n, len(d.undo)))
		d.base = p
	}
}

// pending reports whether some change is not durable.
func (d *disk) pending() bool { return len(d.undo) > 0 }

// rollback undoes every change that is not durable, newest first: the
// state a crash leaves on disk. It reports the keys whose record changed.
func (d *disk) rollback() ([]string, error) {
	var keys []string
	for i := len(d.undo) - 1; i >= 0; i-- {
		u := d.undo[i]
		if u.meta {
			v := u.val
			if !u.had {
				v = nil
			}
			if err := d.Store.SetMeta(u.key, v); err != nil {
				return nil, fmt.Errorf("sim: roll back meta %q: %w", u.key, err)
			}
			continue
		}
		if cur, ok, err := d.Store.Get(u.key); err != nil {
			return nil, err
		} else if ok {
			if err := d.Store.Remove(u.key, cur.Version); err != nil {
				return nil, fmt.Errorf("sim: roll back %q: %w", u.key, err)
			}
		}
		if u.had {
			if _, err := d.Store.Apply([]store.Record{u.rec}); err != nil {
				return nil, fmt.Errorf("sim: roll back %q: %w", u.key, err)
			}
		}
		keys = append(keys, string(u.key))
		d.rollbacks++
	}
	d.base += len(d.undo)
	d.undo = d.undo[:0]
	return keys, nil
}
