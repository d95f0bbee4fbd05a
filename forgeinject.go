//go:build faultinject

package hearsay

import (
	"bytes"
	"os"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// HEARSAY_FAULT_FORGE_SIGNATURES=1, in a faultinject build, makes the node
// a forger: every record it sends (mail, rumor, fetch answers,
// anti-entropy) leaves with its signature altered, whoever wrote it. Its
// peers must refuse them all.
func init() {
	if os.Getenv("HEARSAY_FAULT_FORGE_SIGNATURES") != "1" {
		return
	}
	tamperSend = func(env *wire.Envelope) {
		var recs []*wire.Record
		switch b := env.Body.(type) {
		case *wire.Envelope_Mail:
			recs = b.Mail.Records
		case *wire.Envelope_Rumor:
			recs = b.Rumor.Records
		case *wire.Envelope_AeRecords:
			recs = b.AeRecords.Records
		}
		for _, r := range recs {
			// A new slice (the original may be the store's or an
			// outbox's), the same whatever it replaces: direct mail shares
			// one body between the envelopes to every peer, so the hook may
			// see a record twice.
			r.Sig = bytes.Repeat([]byte{0x5a}, 64)
		}
	}
}
