package transport

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// recvRefusal waits for the next incoming on tr and requires a refusal.
func recvRefusal(t *testing.T, tr *Transport) *Incoming {
	t.Helper()
	in := recv(t, tr)
	if in.Refusal == "" || in.Env != nil {
		t.Fatalf("got %+v, want a refusal notice", in)
	}
	return in
}

// TestRefusalNotices: a node with key A is contacted by nodes with key B,
// with no key, and with key A, over UDP and TCP, and contacts a node with
// no key itself. Every failed authentication is answered with a notice
// that names the cause and comes from the refusing node's address; the
// node with the right key gets none.
func TestRefusalNotices(t *testing.T) {
	kA, kB := key(1, 32), key(2, 32)
	// A fresh node with key A per case: the rate limit of notices over TCP
	// counts the source IP, and every case comes from 127.0.0.1.
	newA := func(t *testing.T) *Transport { return newTransport(t, Config{Keyring: mustKeyring(t, kA)}) }

	for _, tc := range []struct {
		name   string
		cfg    Config
		reason string
	}{
		{"key B", Config{Keyring: mustKeyring(t, kB)}, reasonWrongKey},
		{"no key", Config{}, reasonNeedsKey},
	} {
		t.Run(tc.name+" udp", func(t *testing.T) {
			a, b := newA(t), newTransport(t, tc.cfg)
			mustSend(t)(b.Send(a.LocalAddr(), ping(1)))
			in := recvRefusal(t, b)
			if in.From != a.LocalAddr() || !strings.HasPrefix(tc.reason, in.Refusal) {
				t.Fatalf("refusal %+v, want from %s with %q", in, a.LocalAddr(), tc.reason)
			}
			if !strings.Contains(in.Refusal, "key") {
				t.Errorf("refusal %q does not mention the key", in.Refusal)
			}
			if s := b.Stats(); s.RefusalsReceived != 1 {
				t.Errorf("stats %+v", s)
			}
		})
		t.Run(tc.name+" tcp", func(t *testing.T) {
			a, b := newA(t), newTransport(t, tc.cfg)
			mustSend(t)(b.SendTCP(a.LocalAddr(), mail(1, 10<<10)))
			in := recvRefusal(t, b)
			if in.From != a.LocalAddr() || in.Refusal != tc.reason {
				t.Fatalf("refusal %+v, want from %s with %q", in, a.LocalAddr(), tc.reason)
			}
		})
	}

	t.Run("to a node without a key", func(t *testing.T) {
		a, plain := newA(t), newTransport(t, Config{})
		mustSend(t)(a.Send(plain.LocalAddr(), ping(1)))
		in := recvRefusal(t, a)
		if in.From != plain.LocalAddr() || !strings.HasPrefix(reasonNoKey, in.Refusal) {
			t.Fatalf("refusal %+v, want from %s with %q", in, plain.LocalAddr(), reasonNoKey)
		}
	})

	t.Run("key A both ways", func(t *testing.T) {
		a := newTransport(t, Config{Keyring: mustKeyring(t, kA)})
		b := newTransport(t, Config{Keyring: mustKeyring(t, kA)})
		mustSend(t)(b.Send(a.LocalAddr(), ping(7)))
		mustSend(t)(a.Send(b.LocalAddr(), ping(8)))
		mustSend(t)(b.SendTCP(a.LocalAddr(), mail(9, 10<<10)))
		if in := recv(t, b); in.Refusal != "" || in.Env.GetPing().GetSeq() != 8 {
			t.Fatalf("b got %+v", in)
		}
		for range 2 {
			if in := recv(t, a); in.Refusal != "" || in.Env == nil {
				t.Fatalf("a got %+v", in)
			}
		}
		for _, tr := range []*Transport{a, b} {
			if s := tr.Stats(); s.RefusalsReceived != 0 || s.RefusalsSent != 0 || s.RefusalsLimited != 0 || s.AuthErrors != 0 {
				t.Errorf("stats %+v", s)
			}
		}
	})
}

// TestRefusalLimits: notices are rate-limited per source, never answered,
// never larger than the datagram they answer.
func TestRefusalLimits(t *testing.T) {
	a := newTransport(t, Config{Keyring: mustKeyring(t, key(1, 32))})

	t.Run("one per source per interval", func(t *testing.T) {
		b := newTransport(t, Config{})
		const sent = 5
		start := time.Now()
		for i := range sent {
			mustSend(t)(b.Send(a.LocalAddr(), ping(uint64(i))))
		}
		waitFor(t, "all refused", func() bool {
			s := a.Stats()
			return s.RefusalsSent+s.RefusalsLimited == sent
		})
		elapsed := time.Since(start)
		s := a.Stats()
		if max := 1 + uint64(elapsed/RefusalInterval); s.RefusalsSent < 1 || s.RefusalsSent > max {
			t.Fatalf("%d notices for %d frames in %v, want 1 to %d; stats %+v", s.RefusalsSent, sent, elapsed, max, s)
		}
		recvRefusal(t, b)
	})

	t.Run("never answers a notice", func(t *testing.T) {
		before := a.Stats()
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ua, _ := net.ResolveUDPAddr("udp", a.LocalAddr())
		// A well-formed notice is delivered; a malformed one (control
		// character) is dropped; neither is answered.
		bad := refusalFrame("bad\x01notice from nowhere", 100)
		if _, err := c.WriteToUDP(bad, ua); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToUDP(refusalFrame("you are refused", 100), ua); err != nil {
			t.Fatal(err)
		}
		in := recvRefusal(t, a)
		if in.Refusal != "you are refused" || in.From != c.LocalAddr().String() {
			t.Fatalf("got %+v", in)
		}
		s := a.Stats()
		if s.RefusalsSent != before.RefusalsSent || s.RefusalsLimited != before.RefusalsLimited ||
			s.DecodeErrors != before.DecodeErrors+1 || s.RefusalsReceived != before.RefusalsReceived+1 {
			t.Fatalf("stats before %+v after %+v", before, s)
		}
	})

	t.Run("no amplification", func(t *testing.T) {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ua, _ := net.ResolveUDPAddr("udp", a.LocalAddr())
		// A plaintext frame too small to answer: counted, not answered.
		before := a.Stats()
		tiny := []byte("HS\x01\x00\x00\x00\x00\x02ab")
		tiny[2] = wire.ProtocolVersion
		if _, err := c.WriteToUDP(tiny, ua); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "tiny frame refused", func() bool { return a.Stats().AuthErrors == before.AuthErrors+1 })
		if s := a.Stats(); s.RefusalsSent != before.RefusalsSent || s.RefusalsLimited != before.RefusalsLimited+1 {
			t.Fatalf("stats before %+v after %+v", before, s)
		}
		// A frame smaller than the whole notice (but not tiny) gets a
		// notice cut to its size, from another source address.
		c2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		// A join as a node without a key sends it.
		small := frame(t, &wire.Envelope{Cluster: "hearsay", From: "n2", FromAddr: "127.0.0.1:40000", FromId: 1 << 60,
			Body: &wire.Envelope_Join{Join: &wire.Join{}}})
		if len(small) >= wire.HeaderSize+len(reasonNeedsKey) {
			t.Fatalf("test frame of %d bytes is not small", len(small))
		}
		if _, err := c2.WriteToUDP(small, ua); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = c2.SetReadDeadline(time.Now().Add(waitTimeout))
		n, _, err := c2.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no notice: %v; stats %+v", err, a.Stats())
		}
		if n > len(small) {
			t.Fatalf("notice of %d bytes answers a datagram of %d", n, len(small))
		}
		reason, err := parseRefusal(buf[:n])
		if err != nil || !strings.HasPrefix(reasonNeedsKey, reason) || !strings.Contains(reason, "key") {
			t.Fatalf("notice %q: %v", reason, err)
		}
	})
}

func TestRefusalFrame(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes
	for _, tc := range []struct {
		reason string
		limit  int
		want   string // "" for no frame
	}{
		{"short reason", 100, "short reason"},
		{reasonNeedsKey, 1 << 10, reasonNeedsKey},
		{reasonNeedsKey, wire.HeaderSize + 20, reasonNeedsKey[:20]},
		{reasonNeedsKey, wire.HeaderSize + minRefusalReason - 1, ""},
		{long, 1 << 10, long[:MaxRefusalReason]},
		{long, wire.HeaderSize + 21, long[:20]}, // cut at a rune boundary
	} {
		f := refusalFrame(tc.reason, tc.limit)
		if tc.want == "" {
			if f != nil {
				t.Errorf("refusalFrame(%q, %d) = %q, want nil", tc.reason, tc.limit, f)
			}
			continue
		}
		if len(f) > tc.limit {
			t.Errorf("refusalFrame(%q, %d): %d bytes", tc.reason, tc.limit, len(f))
		}
		got, err := parseRefusal(f)
		if err != nil || got != tc.want {
			t.Errorf("refusalFrame(%q, %d) parses to %q, %v; want %q", tc.reason, tc.limit, got, err, tc.want)
		}
	}
	good := refusalFrame("fine", 100)
	for name, raw := range map[string][]byte{
		"empty":     refusalFrame("", 100),
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 'x'),
		"not utf-8": append(bytes.Clone(good[:wire.HeaderSize]), 0xff, 0xfe, 'a', 'b'),
		"too long":  append([]byte{'H', 'S', wire.ProtocolVersion, flagRefusal, 0, 0, 0, MaxRefusalReason + 1}, strings.Repeat("a", MaxRefusalReason+1)...),
		"sealed":    append([]byte{'H', 'S', wire.ProtocolVersion, flagSealed, 0, 0, 0, 4}, "fine"...),
	} {
		if r, err := parseRefusal(raw); err == nil {
			t.Errorf("%s: parseRefusal(%q) = %q, want an error", name, raw, r)
		}
	}
}

func FuzzRefusal(f *testing.F) {
	f.Add(refusalFrame(reasonNeedsKey, 1<<10))
	f.Add(refusalFrame(strings.Repeat("é", 150), 1<<10))
	f.Add([]byte("HS\x01\x02\x00\x00\x00\x03a\x00b"))
	f.Add([]byte("HS\x01\x02\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		reason, err := parseRefusal(data)
		if err != nil {
			if reason != "" {
				t.Fatalf("reason %q with error %v", reason, err)
			}
			return
		}
		if reason == "" || len(reason) > MaxRefusalReason || !utf8.ValidString(reason) {
			t.Fatalf("accepted reason %q", reason)
		}
		// What parses round-trips.
		if again := refusalFrame(reason, 1<<10); !bytes.Equal(again, data) {
			t.Fatalf("round trip %q -> %q", data, again)
		}
		// A transport given these bytes delivers them as a notice, and the
		// decode path never mistakes a notice for an envelope.
		tr := &Transport{cfg: Config{MaxFrame: wire.DefaultMaxFrame}}
		if env, err := tr.decode(data); err == nil {
			t.Fatalf("notice decoded as envelope %v", env)
		}
	})
}
