package directmail

import (
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Acknowledgements are batched per sender: a stream of small mails (one
// write at a time, each mailed at once) would otherwise cost an
// acknowledgement per mail, about as many bytes as a 64-byte record. The
// receiver holds the ids of the mails from one sender for at most
// Config.AckDelay and acknowledges them in one message; the sender's
// AckTimeout is far longer, so nothing is retried for the wait. The ack
// still leaves only after the store's sync that made the mails durable
// (the driver sends it as an AfterSync message, and the sync that
// releases it comes after the one of the mails' batch).

// PendingAck is the acknowledgement owed to one sender: the ids of its
// mails, durable here once the batch that applied them is synced.
type PendingAck struct {
	Peer string // the sender's member name
	Addr string // its address, for a sender not (yet) in the member view
	IDs  []uint64
	due  time.Time
}

// Envelope returns the acknowledgement as a message body: a MailAck for one
// id, MailAcks for several.
func (a PendingAck) Envelope() *wire.Envelope {
	if len(a.IDs) == 1 {
		return &wire.Envelope{Body: &wire.Envelope_MailAck{MailAck: &wire.MailAck{Id: a.IDs[0]}}}
	}
	return &wire.Envelope{Body: &wire.Envelope_MailAcks{MailAcks: &wire.MailAcks{Ids: a.IDs}}}
}

// Acknowledge owes peer (at addr) the acknowledgement of mail id. With no
// AckDelay, or once MaxAckIDs ids are owed to the peer, the
// acknowledgement is due at once (DueAcks returns it); otherwise AckDelay
// after the first id owed.
func (m *Mailer) Acknowledge(now time.Time, peer, addr string, id uint64) {
	a, ok := m.acks[peer]
	if !ok {
		a = &PendingAck{Peer: peer, due: now.Add(m.cfg.AckDelay)}
		m.acks[peer] = a
		m.ackOrder = append(m.ackOrder, peer)
	}
	if addr != "" {
		a.Addr = addr
	}
	a.IDs = append(a.IDs, id)
	m.stats.AcksOwed++
	if len(a.IDs) >= max(m.cfg.MaxAckIDs, 1) {
		a.due = now
	}
}

// DueAcks returns the acknowledgements due at now, in the order their
// first id was owed, and forgets them. The caller sends each
// (PendingAck.Envelope) to its peer.
func (m *Mailer) DueAcks(now time.Time) []PendingAck {
	if len(m.acks) == 0 {
		return nil
	}
	var due []PendingAck
	keep := m.ackOrder[:0]
	for _, name := range m.ackOrder {
		a := m.acks[name]
		if now.Before(a.due) {
			keep = append(keep, name)
			continue
		}
		delete(m.acks, name)
		due = append(due, *a)
		m.stats.AckMessages++
	}
	clear(m.ackOrder[len(keep):])
	m.ackOrder = keep
	return due
}

// AcksPending returns how many mail ids are owed an acknowledgement now.
func (m *Mailer) AcksPending() int {
	n := 0
	for _, a := range m.acks {
		n += len(a.IDs)
	}
	return n
}

func (m *Mailer) ackDeadline() time.Time {
	var d time.Time
	for _, name := range m.ackOrder {
		d = earliest(d, m.acks[name].due)
	}
	return d
}
