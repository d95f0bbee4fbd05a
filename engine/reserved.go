package engine

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/hearsaydb/hearsay/store"
)

// Reserved keys. Keys under ReservedPrefix belong to the cluster, not to
// clients: the node's API refuses to write them, and the engine has every
// one checked by Config.CheckReserved before it applies it, whatever path
// it came by. They replicate like any record (direct mail, rumors,
// anti-entropy) and persist, so they reach members that were down.
var (
	// ReservedPrefix starts every reserved key. No client key starts with
	// a NUL byte by accident.
	ReservedPrefix = []byte("\x00hearsay/")
	// RevokedPrefix starts the key of a revocation:
	// RevokedPrefix + node name, whose value is the CA-signed revocation
	// (certs.Revocation).
	RevokedPrefix = []byte("\x00hearsay/revoked/")
	// RevokedClientPrefix starts the key of a client certificate's
	// revocation: RevokedClientPrefix + client name, whose value is the
	// CA-signed revocation (certs.Revocation with Client set). A namespace
	// of its own, so a node and a client of the same name never collide.
	RevokedClientPrefix = []byte("\x00hearsay/revoked-client/")
)

// ErrRevoked is returned by Step for an envelope from a revoked member.
var ErrRevoked = errors.New("engine: sender revoked")

// ErrReserved reports a refused record under ReservedPrefix.
var ErrReserved = errors.New("engine: reserved key")

// IsReserved reports whether key is under ReservedPrefix.
func IsReserved(key []byte) bool { return bytes.HasPrefix(key, ReservedPrefix) }

// RevokedKey returns the key of name's revocation.
func RevokedKey(name string) []byte {
	return append(bytes.Clone(RevokedPrefix), name...)
}

// RevokedClientKey returns the key of client name's revocation.
func RevokedClientKey(name string) []byte {
	return append(bytes.Clone(RevokedClientPrefix), name...)
}

// checkReserved runs Config.CheckReserved on a record under ReservedPrefix
// and, for an accepted revocation, revokes the member it names.
func (e *Engine) checkReserved(now time.Time, r store.Record) error {
	if e.cfg.CheckReserved == nil || !IsReserved(r.Key) {
		return nil
	}
	if err := e.cfg.CheckReserved(r.Key, r.Value, r.Tombstone); err != nil {
		return fmt.Errorf("%w %q: %w", ErrReserved, r.Key, err)
	}
	if name, ok := bytes.CutPrefix(r.Key, RevokedPrefix); ok && !r.Tombstone {
		e.Revoke(now, string(name))
	}
	return nil
}

// Revoke expels the member name for good: it is marked revoked (and dead)
// in the view, never probed, chosen as a partner or mailed again, news of
// it is ignored, and envelopes it sends are refused (ErrRevoked). The
// driver calls it for the revocations it loads at start; received ones
// call it through Config.CheckReserved.
func (e *Engine) Revoke(now time.Time, name string) {
	if name == "" || name == e.cfg.Name {
		return
	}
	e.members.Revoke(now, name)
	e.drainMemberEvents()
}

// Revoked reports whether name has been revoked here.
func (e *Engine) Revoked(name string) bool { return e.members.IsRevoked(name) }
