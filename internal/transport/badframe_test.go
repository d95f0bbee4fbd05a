package transport

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// badPayload is a plain frame whose payload is no protobuf.
func badPayload() []byte {
	f, _ := wire.Marshal(pingFrom("a", "127.0.0.1:1", 1))
	return corruptFrame(f)
}

// takeReports returns the reports queued on tr now.
func takeReports(tr *Transport) []BadFrame {
	var out []BadFrame
	for {
		select {
		case b := <-tr.BadFrames():
			out = append(out, b)
		default:
			return out
		}
	}
}

// sendMarker sends a ping with seq from a to b and waits for it: every
// datagram a sent b before it has been handled (one reader, in order on
// loopback).
func sendMarker(t *testing.T, a, b *Transport, name string, seq uint64) {
	t.Helper()
	mustSend(t)(a.Send(b.LocalAddr(), pingFrom(name, a.AdvertiseAddr(), seq)))
	expectOnlyMarker(t, b, seq)
}

// TestBadFramesProvenByCertificate: in a certificate cluster, frames that
// verify with a member's certificate and then do not decode, or name
// another sender, are reported with the certificate's name, over UDP and
// TCP. Frames that do not verify are reported for nobody, whatever
// certificate they name: a bad signature or MAC under the member's key id,
// a replay outside the window, a key the receiver lacks, garbage.
func TestBadFramesProvenByCertificate(t *testing.T) {
	c := newTestCA(t)
	key1, key2 := make([]byte, 32), make([]byte, 32)
	rand.Read(key1)
	rand.Read(key2)
	kr1, _ := NewKeyring(key1)
	kr2, _ := NewKeyring(key2)
	authA := c.auth(t, "a")
	a := newTransport(t, Config{Certs: authA, Keyring: kr1})
	b := newTransport(t, Config{Certs: c.auth(t, "b"), Keyring: kr1})
	sendMarker(t, a, b, "a", 1) // b holds a's certificate

	seal := func(k *Keyring, f []byte) []byte {
		s, err := k.Seal(f)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sign := func(f []byte) []byte {
		s, err := authA.Sign(f, false)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Proven: undecodable inside a valid signature, and another name.
	a.sendDatagram(b.LocalAddr(), sign(seal(kr1, badPayload())))
	other, _ := wire.Marshal(pingFrom("b", a.AdvertiseAddr(), 2))
	a.sendDatagram(b.LocalAddr(), sign(seal(kr1, other)))
	// Not proven.
	forged := sign(seal(kr1, badPayload()))
	forged[len(forged)-1] ^= 1 // bad signature under a's key id
	a.sendDatagram(b.LocalAddr(), forged)
	mac := []byte("HS\x01\x10\x00\x00\x00\x30")
	mac = append(mac, authA.keyID[:]...)
	mac = append(mac, bytes.Repeat([]byte{7}, 40)...) // a session frame with a made-up tag
	a.sendDatagram(b.LocalAddr(), mac)
	a.sendDatagram(b.LocalAddr(), sign(seal(kr2, badPayload()))) // a key b lacks: a rotation
	old := rawAuth(c.ca, authA.cert, authA.key)
	old.now = func() time.Time { return time.Now().Add(-time.Hour) }
	stale, _ := old.Sign(seal(kr1, badPayload()), false)
	a.sendDatagram(b.LocalAddr(), stale) // a replay beyond the window
	newer, _ := wire.Marshal(pingFrom("a", a.AdvertiseAddr(), 3))
	newer[2] = wire.ProtocolVersion + 1 // a newer protocol inside: a rolling upgrade
	a.sendDatagram(b.LocalAddr(), sign(seal(kr1, newer)))
	a.sendDatagram(b.LocalAddr(), []byte("HS\x01\x00garbage"))
	sendMarker(t, a, b, "a", 4)

	got := takeReports(b)
	if len(got) != 2 || got[0].Name != "a" || got[0].Kind != BadUndecodable || got[0].Proto != "udp" ||
		got[1].Name != "a" || got[1].Kind != BadWrongName {
		t.Fatalf("reports %+v, want a undecodable and a wrong_name over udp", got)
	}
	if s := b.Stats(); s.BadFramesReported != 2 || s.ReportsDropped != 0 {
		t.Fatalf("stats %+v", s)
	}

	// Over TCP, the same (a frame larger than a datagram).
	big := mail(5, 4<<10)
	big.From = "a"
	plain, _ := wire.Marshal(big)
	frame := sign(seal(kr1, corruptFrame(plain)))
	if _, err := a.enqueue(b.LocalAddr(), frame); err != nil {
		t.Fatal(err)
	}
	mustSend(t)(a.SendTCP(b.LocalAddr(), pingFrom("a", a.AdvertiseAddr(), 6)))
	expectOnlyMarker(t, b, 6)
	if got := takeReports(b); len(got) != 1 || got[0].Name != "a" || got[0].Kind != BadUndecodable || got[0].Proto != "tcp" {
		t.Fatalf("tcp reports %+v", got)
	}
}

// TestBadFramesProvenByKeyring: with a keyring and no certificates, a
// datagram that opens with the keyring and does not decode is reported
// with its source address; a frame no key opens, a plaintext one, and a
// bad frame over TCP (whose source port names no member) are not.
func TestBadFramesProvenByKeyring(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	kr, _ := NewKeyring(key)
	a := newTransport(t, Config{Keyring: kr})
	b := newTransport(t, Config{Keyring: kr})
	sealed, err := kr.Seal(badPayload())
	if err != nil {
		t.Fatal(err)
	}
	a.sendDatagram(b.LocalAddr(), sealed)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	a.sendDatagram(b.LocalAddr(), tampered)
	a.sendDatagram(b.LocalAddr(), badPayload())
	if _, err := a.enqueue(b.LocalAddr(), sealed); err != nil {
		t.Fatal(err)
	}
	mustSend(t)(a.SendTCP(b.LocalAddr(), pingFrom("a", a.AdvertiseAddr(), 1)))
	expectOnlyMarker(t, b, 1)
	sendMarker(t, a, b, "a", 2)
	got := takeReports(b)
	if len(got) != 1 || got[0].Addr != a.LocalAddr() || got[0].Name != "" || got[0].Kind != BadUndecodable {
		t.Fatalf("reports %+v, want one undecodable from %s", got, a.LocalAddr())
	}
}

// TestBadFramesWithoutCredentials: without a keyring or certificates
// nothing proves a sender, so nothing is reported.
func TestBadFramesWithoutCredentials(t *testing.T) {
	a := newTransport(t, Config{})
	b := newTransport(t, Config{})
	a.sendDatagram(b.LocalAddr(), badPayload())
	sendMarker(t, a, b, "a", 1)
	if got := takeReports(b); len(got) != 0 {
		t.Fatalf("reports %+v without credentials", got)
	}
	if s := b.Stats(); s.DecodeErrors != 1 {
		t.Fatalf("stats %+v, want the bad frame counted", s)
	}
}

// TestBadFrameReportsBounded: reports beyond ReportBuffer are dropped and
// counted; the frames are still refused and the transport goes on.
func TestBadFrameReportsBounded(t *testing.T) {
	c := newTestCA(t)
	authA := c.auth(t, "a")
	a := newTransport(t, Config{Certs: authA})
	b := newTransport(t, Config{Certs: c.auth(t, "b"), ReportBuffer: 2})
	sendMarker(t, a, b, "a", 1)
	for range 5 {
		f, err := authA.Sign(badPayload(), false)
		if err != nil {
			t.Fatal(err)
		}
		a.sendDatagram(b.LocalAddr(), f)
	}
	sendMarker(t, a, b, "a", 2)
	if got := takeReports(b); len(got) != 2 {
		t.Fatalf("%d reports queued, bound 2", len(got))
	}
	if s := b.Stats(); s.BadFramesReported != 2 || s.ReportsDropped != 3 {
		t.Fatalf("stats %+v, want 2 reported and 3 dropped", s)
	}
}

// FuzzBlame: whatever a frame holds, it is held against a certificate's
// owner only when that owner's key authenticated it. Each input is used
// three ways: as the inner frame of a frame that a signs (attributable to
// a, and only to a), the same with its signature broken, and as a raw
// frame from a stranger (both attributable to nobody).
func FuzzBlame(f *testing.F) {
	c := newTestCA(f)
	a, b := c.auth(f, "a"), c.auth(f, "b")
	good, _ := wire.Marshal(pingFrom("a", "127.0.0.1:1", 1))
	other, _ := wire.Marshal(pingFrom("b", "127.0.0.1:1", 1))
	f.Add(good)
	f.Add(other)
	f.Add(corruptFrame(good))
	f.Add(good[:len(good)-1])
	f.Add([]byte("HS\x01\x00\x00\x00\x00\x00"))
	f.Add([]byte("HS\x01\x01\x00\x00\x00\x00"))
	f.Add([]byte{})
	tr := &Transport{cfg: Config{Certs: b, MaxFrame: wire.DefaultMaxFrame}}
	f.Fuzz(func(t *testing.T, data []byte) {
		signed, err := a.Sign(data, true)
		if err != nil {
			return
		}
		env, pr, err := tr.decodeProven(signed)
		kind := blame(pr, err)
		switch {
		case err == nil && env.From != "a" && !isHello(env):
			t.Fatalf("accepted an envelope from %q signed by a", env.From)
		case kind != "" && pr.name != "a":
			t.Fatalf("blamed %q for a frame a signed", pr.name)
		case err == nil && kind != "":
			t.Fatalf("blamed a frame that decoded")
		}
		// A plain inner frame (flags 0) that decodes, from another sender,
		// is blamed as such.
		if inner, ierr := wire.Unmarshal(data, wire.DefaultMaxFrame); ierr == nil && data[3] == 0 && inner.From != "a" && !isHello(inner) && kind != BadWrongName {
			t.Fatalf("envelope from %q signed by a: blamed %q (err %v)", inner.From, kind, err)
		}
		broken := bytes.Clone(signed)
		broken[len(broken)-1] ^= 0x80
		if _, pr, err := tr.decodeProven(broken); blame(pr, err) != "" {
			t.Fatalf("blamed %+v for a frame whose signature does not verify: %v", pr, err)
		}
		if _, pr, err := tr.decodeProven(data); blame(pr, err) != "" {
			t.Fatalf("blamed %+v for a stranger's frame: %v", pr, err)
		}
	})
}
