package transport

import (
	"errors"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Bad frames proven to come from a peer.
//
// The transport refuses every frame it cannot decode or authenticate, and
// most of them prove nothing about who sent them: a UDP source address is
// whatever the sender wrote, a key id is public, a bad signature or MAC can
// be made by anyone, and a frame outside the replay window may be an old
// frame replayed by whoever recorded it. Holding such frames against the
// member they name would let a stranger get an honest member quarantined by
// sending junk in its name. So a frame is reported (BadFrames) only when
// the frame itself proves its sender:
//
//   - with certificates, it verified with the sender's node certificate
//     (signature or session MAC, certificate valid and unrevoked, time in
//     the replay window), and then its inner frame did not decode (bad
//     header, unknown flags, malformed protobuf: BadUndecodable), or its
//     envelope names another sender than the certificate (BadWrongName).
//     Only the certificate's key makes such a frame, and a replay of it
//     proves the same thing again.
//   - with a keyring and no certificates, it opened with the keyring and
//     then did not decode, over UDP: only a key holder makes it, and the
//     datagram's source address is the one clue to which (a key holder can
//     write any source address, but it can also speak under any name in a
//     cluster without certificates; a stranger cannot make such a frame).
//     Over TCP the source is an ephemeral port, which names no member.
//
// Never reported, because an honest member sends them: frames of a newer
// protocol version (a rolling upgrade), frames over this node's size limit
// (another --max-value-size), frames sealed with a key this node lacks or
// unsealed where it has one (a key rotation in progress, or a member that
// missed one: it is told so by a refusal notice, and its join error says
// "wrong key"), and truncated streams (a peer that died mid-frame).
// Without any credentials nothing is proven and nothing is reported.

// Kinds of BadFrame.
const (
	// BadUndecodable: the frame authenticated, then did not decode.
	BadUndecodable = "undecodable"
	// BadWrongName: the frame authenticated with one node's certificate,
	// and its envelope names another sender.
	BadWrongName = "wrong_name"
)

// DefaultReportBuffer is the default capacity of the BadFrames channel.
const DefaultReportBuffer = 256

// BadFrame reports a frame this node refused that its sender is proven to
// have made (see Transport.BadFrames).
type BadFrame struct {
	// Name is the name of the node certificate the frame authenticated
	// with; empty when the keyring alone authenticated it.
	Name string
	// Addr is the UDP source address of a frame authenticated by the
	// keyring alone; the node holds it against the member whose gossip
	// address it is, if any.
	Addr string
	// Kind is BadUndecodable or BadWrongName.
	Kind string
	// Proto is "udp" or "tcp".
	Proto string
	// Err says why the frame was refused.
	Err error
}

// proof is what an authenticated frame proves about its sender.
type proof struct {
	// name is the node certificate the frame verified with.
	name string
	// sealed: the keyring opened the frame (and there are no
	// certificates).
	sealed bool
}

// blame returns the BadFrame kind of a frame that failed to decode with
// err after authenticating as p, or "" when the failure proves nothing
// against its sender (see above).
func blame(p proof, err error) string {
	switch {
	case err == nil, p.name == "" && !p.sealed:
		return ""
	case p.name != "" && refusalReason(err) == reasonWrongName:
		return BadWrongName
	case errors.Is(err, ErrAuth), errors.Is(err, wire.ErrVersion), errors.Is(err, wire.ErrTooLarge):
		return ""
	case errors.Is(err, wire.ErrMagic), errors.Is(err, wire.ErrShort), errors.Is(err, wire.ErrMalformed):
		return BadUndecodable
	}
	return ""
}

// BadFrames returns the channel of reports of bad frames proven to come
// from a peer, for peer scoring. It is buffered (Config.ReportBuffer); a
// report that finds it full is dropped and counted (Stats.ReportsDropped).
// It is never closed.
func (t *Transport) BadFrames() <-chan BadFrame { return t.reports }

// report queues a BadFrame for a frame from (a UDP source or a TCP
// connection's remote address) that failed with err after authenticating
// as p, if it proves anything against its sender.
func (t *Transport) report(proto, from string, p proof, err error) {
	kind := blame(p, err)
	if kind == "" {
		return
	}
	b := BadFrame{Name: p.name, Kind: kind, Proto: proto, Err: err}
	if p.name == "" {
		if proto != "udp" {
			return // an ephemeral TCP port names no member
		}
		b.Addr = from
	}
	select {
	case t.reports <- b:
		t.stats.reported.Add(1)
	default:
		t.stats.reportsDropped.Add(1)
		t.warn(warnReports, "bad-frame reports queue full, report dropped", "from", from, "sender", p.name, "kind", kind)
	}
}
