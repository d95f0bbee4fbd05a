package hearsay

import (
	"errors"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/store"
)

// Errors returned by Node methods. They are wrapped with detail; test them
// with errors.Is.
var (
	// ErrNotFound is returned by Get when the key has no value (never
	// written, or deleted).
	ErrNotFound = errors.New("hearsay: key not found")
	// ErrEmptyKey is returned for a zero-length key.
	ErrEmptyKey = store.ErrEmptyKey
	// ErrKeyTooLarge is returned for a key longer than store.MaxKeySize.
	ErrKeyTooLarge = store.ErrKeyTooLarge
	// ErrValueTooLarge is returned for a value longer than Config.MaxValueSize.
	ErrValueTooLarge = store.ErrValueTooLarge
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("hearsay: node closed")
	// ErrNotReady is returned by reads and writes while the node is still
	// catching up with the cluster (see Status.Serving).
	ErrNotReady = errors.New("hearsay: node not ready")
	// ErrClockOffset is returned by writes while this node's clock is
	// further from its peers' than engine.Config.MaxClockOffset, or before
	// it has measured the offset to any live peer. The error names the
	// measured offset and the bound; the node recovers by itself once its
	// clock is corrected.
	ErrClockOffset = engine.ErrClockOffset
	// ErrNoSpace is returned by writes while the data directory's free
	// space is below Config.MinFreeDisk or the store has met a full disk
	// (ENOSPC). Reads go on; writes are taken again once space is freed.
	// The agent answers 507 Insufficient Storage.
	ErrNoSpace = store.ErrNoSpace
	// ErrStorageFailed is returned by writes after a sync of the store
	// failed (an fsync error): the node keeps serving reads but takes no
	// write until it is restarted, which recovers what is durable
	// (fail-stop). The agent answers 503.
	ErrStorageFailed = store.ErrFailed
)

// Version orders writes: a hybrid logical clock timestamp and the id of the
// node that wrote. The newer version wins every conflict.
type Version = store.Version

// Entry is a live key and its value, as returned by Get and Scan.
type Entry struct {
	Key     []byte
	Value   []byte
	Version Version
}

// Event is one change to the replica, delivered to watchers: a write or
// delete made here or learned from a peer.
type Event struct {
	Key     []byte
	Value   []byte
	Version Version
	// Deleted is true when the change is a delete (a tombstone).
	Deleted bool
	// Revision is this node's revision of the change (Node.Revision): it
	// rises by one with every change the node applies, whatever its key,
	// so a watcher passes the last one it got to Since to resume. Zero in
	// the events of a snapshot but its last.
	Revision uint64
	// Snapshot is set on the events of a snapshot, which a watch resumed
	// from a revision the change log no longer reaches sends instead of
	// the changes (see Since): one event per record held under the prefix,
	// tombstones included, then one with no Key and the Revision the
	// snapshot is as new as.
	Snapshot bool
}

// MemberState is a member's state as seen by this node.
type MemberState string

// Member states, ordered as SWIM orders them.
const (
	StateAlive   MemberState = "alive"
	StateSuspect MemberState = "suspect"
	StateDead    MemberState = "dead"
	StateLeft    MemberState = "left"
	// StateRevoked is a member whose node certificate was revoked (hearsay
	// cert revoke): expelled for good, its frames refused.
	StateRevoked MemberState = "revoked"
)

// Member is one node of the cluster as seen by this node.
type Member struct {
	Name        string      `json:"name"`
	Address     string      `json:"address"`
	State       MemberState `json:"state"`
	Incarnation uint64      `json:"incarnation"`
	// Self is true for the member that is this node.
	Self bool `json:"self,omitempty"`
	// ClockOffset is the member's clock minus this node's, in seconds, as
	// last measured over a probe round trip (within half of it); absent if
	// never measured.
	ClockOffset *float64 `json:"clock_offset,omitempty"`
	// Quarantined is true while this node quarantines the member: it sent
	// what does not check out (invalid or future records, member floods,
	// stalled exchanges, refuted accusations...) until its score fell
	// below minus the threshold. Its messages are dropped and it is chosen
	// as no partner until its score decays back above half of that.
	Quarantined bool `json:"quarantined,omitempty"`
	// Score is this node's score of the member: 0 for a member never
	// caught, falling by each offence's weight and decaying back to 0
	// (absent when 0).
	Score float64 `json:"score,omitempty"`
	// Outbox is how many direct-mail records wait in this node's outbox
	// for the member's acknowledgement.
	Outbox int `json:"outbox,omitempty"`
}

// Status describes this node.
type Status struct {
	Name    string `json:"name"`
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	// Ready is true when the node is joined, caught up and writable: what
	// an orchestrator's readiness probe asks (GET /v1/health/ready).
	// NotReady says why it is not.
	Ready bool `json:"ready"`
	// NotReady lists the reasons the node is not ready, empty when Ready.
	NotReady []string `json:"not_ready,omitempty"`
	// Serving is false while the node refuses reads and writes (it catches
	// up after an absence longer than the tombstone grace period). A node
	// that has not joined yet serves: its writes replicate once it joins.
	Serving bool `json:"serving"`
	// Joined is true once a seed has answered this node's join; always true
	// for a node given no seeds.
	Joined bool `json:"joined"`
	// LastJoinError is why the last join attempt failed (no answer, refused
	// by the peer's key, an incompatible cluster or setting); empty once
	// joined.
	LastJoinError string    `json:"last_join_error,omitempty"`
	Members       int       `json:"members"`
	Alive         int       `json:"alive"`
	Started       time.Time `json:"started"`
	// Outbox is the number of direct-mail records waiting for retry, over
	// all peers.
	Outbox int `json:"outbox"`
	// ClockOffset is this node's clock minus the cluster's, in seconds: the
	// median of the offsets measured to its live peers (positive: this
	// node is ahead). ClockPeers is how many peers that is the median of.
	ClockOffset float64 `json:"clock_offset"`
	ClockPeers  int     `json:"clock_peers"`
	// SyncSeconds is the latency of the store's recent syncs (the last
	// minute); nil for a node without a data directory.
	SyncSeconds *SyncLatency `json:"sync_seconds,omitempty"`
	// SlowSync is true while those syncs are slower than Config.SlowSync
	// (p99 over the window, or the sync in progress); NotReady then says
	// so.
	SlowSync bool `json:"slow_sync"`
	// Signing is how records are signed: "ed25519" in a certificate
	// cluster (Config.Identity), "none" otherwise.
	Signing string `json:"signing"`
	// Revision is the revision of the last change this node applied and
	// made durable (Node.Revision): the id of the latest watch event.
	Revision uint64 `json:"revision"`
}
