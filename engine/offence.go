package engine

import (
	"maps"
	"time"
)

// Kinds of offence a peer commits by sending what does not check out.
const (
	// OffenceSignature: a record whose signature is missing or does not
	// verify against its origin's certificate.
	OffenceSignature = "signature"
	// OffenceCertificate: a node certificate that does not verify against
	// the cluster CA.
	OffenceCertificate = "certificate"
	// OffenceClaim: a membership claim whose signature does not verify
	// against the certificate of the node that must make it (the member
	// for alive and left, the accuser for suspect and dead).
	OffenceClaim = "claim"
)

// reportOffence records that peer sent something of the given kind that
// does not check out. For now it only counts per kind (Offences); peer
// scoring builds on it.
func (e *Engine) reportOffence(now time.Time, peer string, kind string) {
	_, _ = now, peer
	if e.offences == nil {
		e.offences = map[string]uint64{}
	}
	e.offences[kind]++
}

// Offences returns how many offences of each kind peers committed.
func (e *Engine) Offences() map[string]uint64 { return maps.Clone(e.offences) }
