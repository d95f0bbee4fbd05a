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
			// A new slice: the original may be the store's or an
			// outbox's.
			sig := bytes.Clone(r.Sig)
			if len(sig) == 0 {
				sig = make([]byte, 64)
			}
			sig[0] ^= 0xff
			r.Sig = sig
		}
	}
}
