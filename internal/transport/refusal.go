package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Refusal notices.
//
// A node that cannot authenticate a frame drops it; without a word the
// sender would only see silence, and a join through a seed with another key
// (or none) would look exactly like a join to a dead address. So the node
// answers such a frame with a refusal notice: a plaintext frame with
// flagRefusal whose body is a short UTF-8 reason:
//
//	header (8)   magic "HS" | version | flags=flagRefusal | body length (≤ MaxRefusalReason)
//	reason       UTF-8, no control characters
//
// A notice is not authenticated (the two nodes share no key, that is the
// point), so the receiver only reports it and never changes state on it.
// Answering costs the refuser, so notices are bounded: never one in answer
// to a notice, at most one per source address per RefusalInterval and
// RefusalBurst per RefusalInterval in all, and over UDP only in answer to a
// datagram at least as large as the notice (no amplification: a notice is
// truncated to the datagram's size, or not sent when that leaves too little).
const (
	flagRefusal byte = 0x02
	// MaxRefusalReason is the largest reason a notice carries, in bytes.
	MaxRefusalReason = 200
	// RefusalInterval is the least time between two notices to one source
	// address.
	RefusalInterval = time.Second
	// RefusalBurst is the most notices sent in one RefusalInterval, over all
	// sources.
	RefusalBurst = 32
	// minRefusalReason is the shortest (truncated) reason worth sending.
	minRefusalReason = 16
	// maxRefusalSources bounds the per-source table of the rate limit.
	maxRefusalSources = 4096
)

// Reasons sent in refusal notices, from the refusing node's point of view.
// What matters comes first, since a notice may be cut to the size of the
// datagram it answers.
const (
	reasonNeedsKey = "key required: the receiver encrypts gossip (--secret-key-file)"
	reasonNoKey    = "no key here: the receiver has no --secret-key-file and refuses encrypted frames"
	reasonWrongKey = "wrong key: no key in the receiver's keyring opens the frame (--secret-key-file)"
)

// errRefusal reports a malformed refusal notice.
var errRefusal = errors.New("transport: malformed refusal notice")

// refusalFrame returns the notice carrying reason, cut to at most limit
// bytes on the wire (and to MaxRefusalReason bytes of reason) at a rune
// boundary; nil if limit leaves less than minRefusalReason bytes of reason.
func refusalFrame(reason string, limit int) []byte {
	n := min(len(reason), MaxRefusalReason, limit-wire.HeaderSize)
	if n < min(len(reason), minRefusalReason) {
		return nil
	}
	for n > 0 && n < len(reason) && !utf8.RuneStart(reason[n]) {
		n--
	}
	out := make([]byte, wire.HeaderSize+n)
	putHeader(out, flagRefusal, n)
	copy(out[wire.HeaderSize:], reason[:n])
	return out
}

// isRefusal reports whether raw, a frame whose header has been checked,
// is a refusal notice.
func isRefusal(raw []byte) bool { return len(raw) >= wire.HeaderSize && raw[3] == flagRefusal }

// parseRefusal decodes a refusal notice into its reason. It refuses
// anything but a well-formed notice: right header, exact length at most
// MaxRefusalReason, valid UTF-8 without control characters, not empty.
func parseRefusal(raw []byte) (string, error) {
	flags, n, err := parseHeader(raw, MaxRefusalReason)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errRefusal, err)
	}
	if flags != flagRefusal {
		return "", fmt.Errorf("%w: flags %#x", errRefusal, flags)
	}
	body := raw[wire.HeaderSize:]
	switch {
	case len(body) != n:
		return "", fmt.Errorf("%w: header says %d bytes, got %d", errRefusal, n, len(body))
	case n == 0:
		return "", fmt.Errorf("%w: empty reason", errRefusal)
	case !utf8.Valid(body):
		return "", fmt.Errorf("%w: reason is not UTF-8", errRefusal)
	case strings.ContainsFunc(string(body), func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", fmt.Errorf("%w: control character in reason", errRefusal)
	}
	return string(body), nil
}

// refusalLimiter decides whether a notice may be sent now: at most one per
// source per interval, and at most burst per interval over all sources.
type refusalLimiter struct {
	mu       sync.Mutex
	last     map[string]time.Time
	window   time.Time // start of the current global window
	inWindow int
}

func (l *refusalLimiter) allow(now time.Time, source string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= RefusalInterval {
		l.window, l.inWindow = now, 0
	}
	if l.inWindow >= RefusalBurst {
		return false
	}
	if t, ok := l.last[source]; ok && now.Sub(t) < RefusalInterval {
		return false
	}
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if len(l.last) >= maxRefusalSources {
		for s, t := range l.last {
			if now.Sub(t) >= RefusalInterval {
				delete(l.last, s)
			}
		}
		if len(l.last) >= maxRefusalSources {
			return false
		}
	}
	l.last[source] = now
	l.inWindow++
	return true
}

// refusalReason returns the notice to answer a frame that failed to decode
// with err, or "" when it calls for none (only authentication failures do).
func refusalReason(err error) string {
	var re *refusable
	if errors.As(err, &re) {
		return re.reason
	}
	return ""
}

// refusable marks a decode error that a refusal notice answers.
type refusable struct {
	reason string
	err    error
}

func (e *refusable) Error() string { return e.err.Error() }
func (e *refusable) Unwrap() error { return e.err }

// receiveRefusal delivers a refusal notice that came from addr. A notice
// is never answered, whatever it holds.
func (t *Transport) receiveRefusal(proto, from string, raw []byte) {
	reason, err := parseRefusal(raw)
	if err != nil {
		t.stats.decodeErrors.Add(1)
		t.warn(warnDecode, "malformed refusal notice dropped", "proto", proto, "from", from, "bytes", len(raw), "err", err)
		return
	}
	t.stats.refusalsReceived.Add(1)
	// Whatever the reason, the next frames to it carry the certificate.
	t.known.forget(from)
	t.stats.bytesReceived.Add(uint64(len(raw)))
	t.warn(warnRefusal, "peer refused this node's frames", "proto", proto, "from", from, "reason", reason)
	in := &Incoming{From: from, Refusal: reason, Size: len(raw)}
	select {
	case t.incoming <- in:
	case <-t.done:
	default:
		t.stats.inboxDropped.Add(1)
	}
}

// refuseDatagram answers a datagram of size bytes from addr that failed
// authentication, within the rate limit and no larger than the datagram.
func (t *Transport) refuseDatagram(addr netip.AddrPort, size int, reason string) {
	frame := refusalFrame(reason, size)
	if frame == nil || !t.refusals.allow(time.Now(), addr.String()) {
		t.stats.refusalsLimited.Add(1)
		return
	}
	n, err := t.udp.WriteToUDPAddrPort(frame, addr)
	if err != nil {
		t.log.Debug("refusal notice not sent", "to", addr, "err", err)
		return
	}
	t.stats.refusalsSent.Add(1)
	t.stats.bytesSent.Add(uint64(n))
}

// refuseStream writes a refusal notice on an accepted connection, within
// the rate limit; the caller closes the connection. The limit counts the
// peer's IP address, not its ephemeral port, which changes with every
// connection.
func (t *Transport) refuseStream(c net.Conn, from string, reason string) {
	source := from
	if host, _, err := net.SplitHostPort(from); err == nil {
		source = "tcp " + host
	}
	if !t.refusals.allow(time.Now(), source) {
		t.stats.refusalsLimited.Add(1)
		return
	}
	frame := refusalFrame(reason, wire.HeaderSize+MaxRefusalReason)
	_ = c.SetWriteDeadline(time.Now().Add(min(t.cfg.WriteTimeout, time.Second)))
	n, err := c.Write(frame)
	if err != nil {
		t.log.Debug("refusal notice not sent", "to", from, "err", err)
		return
	}
	t.stats.refusalsSent.Add(1)
	t.stats.bytesSent.Add(uint64(n))
}

// readRefusals reads what the peer at addr writes back on a connection this
// node dialed: only refusal notices are expected. It stops at the first
// thing that is not one, and when the connection closes.
func (t *Transport) readRefusals(addr string, c net.Conn) {
	defer t.wg.Done()
	for {
		var h [wire.HeaderSize]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		flags, n, err := parseHeader(h[:], MaxRefusalReason)
		if err != nil || flags != flagRefusal {
			t.stats.decodeErrors.Add(1)
			t.warn(warnDecode, "unexpected data on an outgoing connection", "to", addr, "flags", flags, "err", err)
			return
		}
		raw := make([]byte, wire.HeaderSize+n)
		copy(raw, h[:])
		if _, err := io.ReadFull(c, raw[wire.HeaderSize:]); err != nil {
			return
		}
		t.receiveRefusal("tcp", addr, raw)
	}
}
