package engine

import (
	"github.com/hearsaydb/hearsay/engine/trust"
)

// Kinds of offence a peer commits by sending what does not check out,
// found by the signature checks; with the others (package trust) they are
// scored by reportOffence (quarantine.go).
const (
	// OffenceSignature: a record whose signature is missing or does not
	// verify against its origin's certificate.
	OffenceSignature = trust.Signature
	// OffenceCertificate: a node certificate that does not verify against
	// the cluster CA.
	OffenceCertificate = trust.Certificate
	// OffenceClaim: a membership claim whose signature does not verify
	// against the certificate of the node that must make it (the member
	// for alive and left, the accuser for suspect and dead).
	OffenceClaim = trust.Claim
)

// Offences returns how many offences of each kind peers committed (every
// kind of trust.Kinds present), shared until the next offence: read it, do
// not modify it.
func (e *Engine) Offences() map[string]uint64 { return e.trust.Offences() }
