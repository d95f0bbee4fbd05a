package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/wire"
)

// testCA is a cluster CA in a temporary directory.
type testCA struct {
	dir string
	ca  *x509.Certificate
}

func newTestCA(t testing.TB) testCA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	ca, err := certs.CreateCA(certs.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return testCA{dir: dir, ca: ca}
}

// node makes a node certificate for name, valid from now-1h (the default)
// or per o's Now and Validity, and returns it with its key.
func (c testCA) node(t testing.TB, name string, o certs.Options) (*x509.Certificate, ed25519.PrivateKey) {
	t.Helper()
	o.Dir, o.Overwrite = c.dir, true
	cert, err := certs.CreateNode(o, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cert, readKey(t, filepath.Join(c.dir, certs.NodeKey))
}

func readKey(t testing.TB, path string) ed25519.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := certs.ParseKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// auth returns a CertAuth for name, checked as a node would.
func (c testCA) auth(t testing.TB, name string) *CertAuth {
	t.Helper()
	cert, key := c.node(t, name, certs.Options{})
	a, err := NewCertAuth(CertAuthConfig{CA: c.ca, Cert: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rawAuth returns a CertAuth that signs with cert and key as they are,
// unchecked: what a node with a bad certificate would send.
func rawAuth(ca, cert *x509.Certificate, key ed25519.PrivateKey) *CertAuth {
	a := &CertAuth{ca: ca, cert: cert, key: key, keyID: CertKeyID(cert), name: cert.Subject.CommonName,
		window: DefaultReplayWindow, max: DefaultMaxCachedCerts, now: time.Now, cache: map[[KeyIDSize]byte]*peerCert{}}
	if err := a.session.init(); err != nil {
		panic(err)
	}
	return a
}

func pingFrom(name, addr string, seq uint64) *wire.Envelope {
	return &wire.Envelope{Cluster: "test", From: name, FromAddr: addr, Body: &wire.Envelope_Ping{Ping: &wire.Ping{Seq: seq}}}
}

// TestCertAuthenticatedGossip: two nodes of one CA exchange frames over
// UDP and TCP. The first datagram carries the certificate, which the
// receiver verifies once; once the sender has heard an authenticated frame
// from the receiver, its datagrams go without it.
func TestCertAuthenticatedGossip(t *testing.T) {
	c := newTestCA(t)
	a := newTransport(t, Config{Certs: c.auth(t, "a")})
	b := newTransport(t, Config{Certs: c.auth(t, "b")})

	mustSend(t)(a.Send(b.LocalAddr(), pingFrom("a", a.AdvertiseAddr(), 1)))
	if in := recv(t, b); in.Env.GetPing().GetSeq() != 1 || in.Env.From != "a" {
		t.Fatalf("b got %+v", in)
	}
	if s := b.Stats(); s.CertsVerified != 1 || s.CertsCached != 1 {
		t.Fatalf("b stats %+v, want one certificate verified and cached", s)
	}
	// Over TCP, with a large body, after the connection's hello.
	env := mail(2, 100<<10)
	env.From = "a"
	mustSend(t)(a.Send(b.LocalAddr(), env))
	if in := recv(t, b); !equalValue(in.Env, env) {
		t.Fatalf("b got %+v", in)
	}
	// b answers; then a knows b holds its certificate.
	mustSend(t)(b.Send(a.LocalAddr(), pingFrom("b", b.AdvertiseAddr(), 3)))
	recv(t, a)
	attached := a.Stats().CertsAttached
	mustSend(t)(a.Send(b.LocalAddr(), pingFrom("a", a.AdvertiseAddr(), 4)))
	if in := recv(t, b); in.Env.GetPing().GetSeq() != 4 {
		t.Fatalf("b got %+v", in)
	}
	if got := a.Stats().CertsAttached; got != attached {
		t.Errorf("a attached its certificate to a peer that has it (%d, was %d)", got, attached)
	}
	if got := a.Stats().SessionFrames; got == 0 {
		t.Errorf("a signed a frame to a peer it shares a session with (stats %+v)", a.Stats())
	}
	// A join always carries it.
	join := &wire.Envelope{Cluster: "test", From: "a", FromAddr: a.AdvertiseAddr(), Body: &wire.Envelope_Join{Join: &wire.Join{}}}
	mustSend(t)(a.Send(b.LocalAddr(), join))
	recv(t, b)
	if got := a.Stats().CertsAttached; got != attached+1 {
		t.Errorf("join sent without the certificate (%d attached, was %d)", got, attached)
	}
	if s := b.Stats(); s.AuthErrors != 0 || s.CertsVerified != 1 {
		t.Errorf("b stats %+v", s)
	}
}

// TestCertAuthWithKeyring: certificates and a keyring together: frames
// are sealed, then signed, and both are checked.
func TestCertAuthWithKeyring(t *testing.T) {
	c := newTestCA(t)
	k := key(3, 32)
	a := newTransport(t, Config{Certs: c.auth(t, "a"), Keyring: mustKeyring(t, k)})
	b := newTransport(t, Config{Certs: c.auth(t, "b"), Keyring: mustKeyring(t, k)})
	mustSend(t)(a.Send(b.LocalAddr(), pingFrom("a", a.AdvertiseAddr(), 1)))
	if in := recv(t, b); in.Env.GetPing().GetSeq() != 1 {
		t.Fatalf("b got %+v", in)
	}
	env := mail(2, 100<<10)
	env.From = "a"
	mustSend(t)(a.SendTCP(b.LocalAddr(), env))
	if in := recv(t, b); !equalValue(in.Env, env) {
		t.Fatalf("b got %+v", in)
	}
	// Right certificate, wrong key: refused.
	e := newTransport(t, Config{Certs: c.auth(t, "e"), Keyring: mustKeyring(t, key(4, 32))})
	mustSend(t)(e.Send(b.LocalAddr(), pingFrom("e", e.AdvertiseAddr(), 1)))
	if in := recvRefusal(t, e); !strings.HasPrefix(reasonWrongKey, in.Refusal) {
		t.Fatalf("refusal %q, want %q", in.Refusal, reasonWrongKey)
	}
}

// TestCertAuthRefusals: frames from senders without a valid certificate
// of the receiver's CA, over UDP and TCP, are refused with a notice that
// names the cause, and never delivered.
func TestCertAuthRefusals(t *testing.T) {
	c := newTestCA(t)
	other := newTestCA(t)
	past := func() time.Time { return time.Now().Add(-48 * time.Hour) }
	expCert, expKey := c.node(t, "old", certs.Options{Now: past, Validity: 2 * time.Hour})
	otherCert, otherKey := other.node(t, "a", certs.Options{})
	if _, err := certs.CreateClient(certs.Options{Dir: c.dir}, "cli", certs.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := loadRaw(t, c.dir, "client.cli.crt", "client.cli.key")
	goodCert, goodKey := c.node(t, "a", certs.Options{})

	for _, tc := range []struct {
		name   string
		sender Config
		from   string
		reason string
	}{
		{"no certificate", Config{}, "a", reasonNoCert},
		{"other CA", Config{Certs: rawAuth(other.ca, otherCert, otherKey)}, "a", reasonOtherCA},
		{"expired", Config{Certs: rawAuth(c.ca, expCert, expKey)}, "old", reasonExpired},
		{"client certificate", Config{Certs: rawAuth(c.ca, cliCert, cliKey)}, "cli", reasonNotNode},
		{"wrong name", Config{Certs: rawAuth(c.ca, goodCert, goodKey)}, "mallory", reasonWrongName},
		{"revoked", Config{Certs: rawAuth(c.ca, goodCert, goodKey)}, "a", reasonRevoked},
	} {
		for _, stream := range []bool{false, true} {
			proto := "udp"
			if stream {
				proto = "tcp"
			}
			t.Run(tc.name+" "+proto, func(t *testing.T) {
				ra := c.auth(t, "b")
				ra.Revoked = func(name string) bool { return tc.reason == reasonRevoked && name == "a" }
				b := newTransport(t, Config{Certs: ra})
				s := newTransport(t, tc.sender)
				env := pingFrom(tc.from, s.AdvertiseAddr(), 1)
				if stream {
					mustSend(t)(s.SendTCP(b.LocalAddr(), env))
				} else {
					mustSend(t)(s.Send(b.LocalAddr(), env))
				}
				in := recvRefusal(t, s)
				if !strings.HasPrefix(tc.reason, in.Refusal) || len(in.Refusal) < 16 {
					t.Fatalf("refusal %q, want %q", in.Refusal, tc.reason)
				}
				// Nothing was delivered: the next thing b sees is a marker
				// from a good node.
				g := newTransport(t, Config{Certs: c.auth(t, "g")})
				mustSend(t)(g.Send(b.LocalAddr(), pingFrom("g", g.AdvertiseAddr(), 99)))
				expectOnlyMarker(t, b, 99)
				if st := b.Stats(); st.AuthErrors == 0 {
					t.Errorf("stats %+v: no auth error counted", st)
				}
			})
		}
	}

	// A node without certificates refuses signed frames.
	t.Run("signed to a node without certificates", func(t *testing.T) {
		b := newTransport(t, Config{})
		s := newTransport(t, Config{Certs: c.auth(t, "a")})
		mustSend(t)(s.Send(b.LocalAddr(), pingFrom("a", s.AdvertiseAddr(), 1)))
		if in := recvRefusal(t, s); !strings.HasPrefix(reasonNoCertsHere, in.Refusal) {
			t.Fatalf("refusal %q", in.Refusal)
		}
	})
}

func loadRaw(t *testing.T, dir, certFile, keyFile string) (*x509.Certificate, ed25519.PrivateKey) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := certs.ParseCert(data)
	if err != nil {
		t.Fatal(err)
	}
	return cert, readKey(t, filepath.Join(dir, keyFile))
}

// TestUnknownKeyIDAttachAgain: a sender that believes the receiver holds
// its certificate (the receiver restarted, or evicted it) sends without
// it; the receiver refuses with "unknown certificate: attach it", and the
// sender's next frame carries it and is accepted.
func TestUnknownKeyIDAttachAgain(t *testing.T) {
	c := newTestCA(t)
	a := newTransport(t, Config{Certs: c.auth(t, "a")})
	b := newTransport(t, Config{Certs: c.auth(t, "b")})
	a.known.set(b.LocalAddr(), true)
	mustSend(t)(a.Send(b.LocalAddr(), pingFrom("a", a.AdvertiseAddr(), 1)))
	if in := recvRefusal(t, a); in.Refusal != reasonUnknownCert {
		t.Fatalf("refusal %q, want %q", in.Refusal, reasonUnknownCert)
	}
	mustSend(t)(a.Send(b.LocalAddr(), pingFrom("a", a.AdvertiseAddr(), 2)))
	if in := recv(t, b); in.Env.GetPing().GetSeq() != 2 {
		t.Fatalf("b got %+v", in)
	}
}

// TestSessionFramesAfterRestart: once two nodes share a session, frames
// between them carry a MAC instead of a signature, over UDP and TCP. When
// the receiver restarts (new session key, empty cache), the sender's
// session frames are refused, it signs again, and delivery resumes.
func TestSessionFramesAfterRestart(t *testing.T) {
	c := newTestCA(t)
	a := newTransport(t, Config{Certs: c.auth(t, "a")})
	bAuth := c.auth(t, "b")
	b := newTransport(t, Config{Certs: bAuth})
	addr := b.LocalAddr()
	mustSend(t)(a.Send(addr, pingFrom("a", a.AdvertiseAddr(), 1)))
	recv(t, b)
	mustSend(t)(b.Send(a.LocalAddr(), pingFrom("b", addr, 2)))
	recv(t, a)
	for seq := uint64(3); seq < 6; seq++ {
		env := pingFrom("a", a.AdvertiseAddr(), seq)
		if seq == 5 {
			env = mail(seq, 100<<10)
			env.From = "a"
			mustSend(t)(a.SendTCP(addr, env))
		} else {
			mustSend(t)(a.Send(addr, env))
		}
		if in := recv(t, b); in.Env.From != "a" {
			t.Fatalf("b got %+v", in)
		}
	}
	if s := a.Stats(); s.SessionFrames != 3 {
		t.Fatalf("a sent %d session frames, want 3 (stats %+v)", s.SessionFrames, s)
	}
	b.Close()
	b2 := newTransport(t, Config{BindAddr: addr, Certs: c.auth(t, "b")})
	seq := uint64(10)
	waitFor(t, "delivery to the restarted peer", func() bool {
		seq++
		mustSend(t)(a.Send(addr, pingFrom("a", a.AdvertiseAddr(), seq)))
		select {
		case in := <-b2.Incoming():
			return in.Env != nil && in.Env.From == "a"
		case in := <-a.Incoming():
			t.Logf("a got refusal %q", in.Refusal)
			return false
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
}

// TestCertAuthOpen checks Open directly: tampering anywhere, a stale or
// future signing time, and the cache bound.
func TestCertAuthOpen(t *testing.T) {
	c := newTestCA(t)
	a, b := c.auth(t, "a"), c.auth(t, "b")
	inner := frame(t, pingFrom("a", "127.0.0.1:1", 1))
	signed, err := a.Sign(inner, true)
	if err != nil {
		t.Fatal(err)
	}
	got, name, err := b.Open(signed)
	if err != nil || name != "a" || !bytes.Equal(got, inner) {
		t.Fatalf("Open = %q, %v", name, err)
	}
	// Flip each byte after the header in turn: never accepted.
	for i := wire.HeaderSize; i < len(signed); i++ {
		bad := bytes.Clone(signed)
		bad[i] ^= 0x01
		if _, _, err := b.Open(bad); err == nil {
			t.Fatalf("frame with byte %d flipped accepted", i)
		}
	}
	bad := bytes.Clone(signed)
	bad[len(bad)-ed25519.SignatureSize-1] ^= 0xff // in the inner frame
	if _, _, err := b.Open(bad); refusalReason(err) != reasonBadSig || !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered payload: %v", err)
	}
	// Replays outside the window.
	for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		b.now = func() time.Time { return time.Now().Add(skew) }
		if _, _, err := b.Open(signed); refusalReason(err) != reasonStale {
			t.Fatalf("frame %v off: %v", skew, err)
		}
	}
	b.now = time.Now
	// Session frames: b learned a's session key from the signed frame;
	// once a has b's (from a frame of b), a MACs and b opens.
	fromB, _ := b.Sign(frame(t, pingFrom("b", "127.0.0.1:2", 1)), true)
	if _, _, err := a.Open(fromB); err != nil {
		t.Fatal(err)
	}
	a.bind("b-addr", CertKeyID(b.cert))
	mac, ok := a.macFrame("b-addr", inner)
	if !ok {
		t.Fatal("no session frame")
	}
	if got, name, err := b.Open(mac); err != nil || name != "a" || !bytes.Equal(got, inner) {
		t.Fatalf("session frame: %q %v", name, err)
	}
	for i := wire.HeaderSize; i < len(mac); i++ {
		bad := bytes.Clone(mac)
		bad[i] ^= 0x01
		if _, _, err := b.Open(bad); err == nil {
			t.Fatalf("session frame with byte %d flipped accepted", i)
		}
	}
	// b restarted with a new session key: "unknown session".
	if err := b.session.init(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(mac); refusalReason(err) != reasonUnknownSession {
		t.Fatalf("session frame to a new session: %v", err)
	}
	// The cache holds at most max certificates.
	b.max = 2
	for _, n := range []string{"c", "d", "e"} {
		s, _ := c.auth(t, n).Sign(inner, true)
		if _, _, err := b.Open(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Cached(); got != 2 {
		t.Fatalf("cached %d certificates, bound 2", got)
	}
}

// FuzzOpenSigned feeds arbitrary frames to the signed-frame decoder and
// the transport's decode path: errors, never a panic, and only genuine
// frames open.
func FuzzOpenSigned(f *testing.F) {
	c := newTestCA(f)
	a, b := c.auth(f, "a"), c.auth(f, "b")
	inner, _ := wire.Marshal(pingFrom("a", "127.0.0.1:1", 1))
	withCert, _ := a.Sign(inner, true)
	without, _ := a.Sign(inner, false)
	f.Add(withCert)
	f.Add(without)
	f.Add(withCert[:wire.HeaderSize+signedPrefix+3])
	f.Add([]byte("HS\x01\x0c\x00\x00\x00\x00"))
	withCert2, _ := b.Sign(inner, true)
	if _, _, err := a.Open(withCert2); err != nil {
		f.Fatal(err)
	}
	a.bind("b", CertKeyID(b.cert))
	if mac, ok := a.macFrame("b", inner); ok {
		f.Add(mac)
	}
	f.Add([]byte{})
	tr := &Transport{cfg: Config{Certs: b, MaxFrame: wire.DefaultMaxFrame}}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, name, err := b.Open(data)
		if err == nil {
			if name != "a" || !bytes.Equal(got, inner) {
				t.Fatalf("opened %q from %q", got, name)
			}
		}
		_, _ = parseSigned(data)
		_, _ = tr.decode(data)
	})
}

// BenchmarkSignVerify measures the CPU cost per frame of signing (send)
// and verifying with a cached certificate (receive), for a 200-byte
// envelope.
func BenchmarkSignVerify(b *testing.B) {
	c := newTestCA(b)
	sa, ra := c.auth(b, "a"), c.auth(b, "b")
	env := pingFrom("a", "127.0.0.1:1", 1)
	env.Members = []*wire.Member{{Name: "some-member", Address: "127.0.0.1:7946", Incarnation: 3}}
	inner, _ := wire.Marshal(env)
	first, _ := sa.Sign(inner, true)
	if _, _, err := ra.Open(first); err != nil {
		b.Fatal(err)
	}
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := sa.Sign(inner, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	signed, _ := sa.Sign(inner, false)
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := ra.Open(signed); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Session frames, once both sides have each other's session key.
	back, _ := ra.Sign(inner, true)
	if _, _, err := sa.Open(back); err != nil {
		b.Fatal(err)
	}
	sa.bind("b", CertKeyID(ra.cert))
	b.Run("session-mac", func(b *testing.B) {
		for b.Loop() {
			if _, ok := sa.macFrame("b", inner); !ok {
				b.Fatal("no session")
			}
		}
	})
	mac, _ := sa.macFrame("b", inner)
	b.Run("session-verify", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := ra.Open(mac); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-new-cert", func(b *testing.B) {
		for b.Loop() {
			ra.mu.Lock()
			clear(ra.cache)
			ra.mu.Unlock()
			if _, _, err := ra.Open(first); err != nil {
				b.Fatal(err)
			}
		}
	})
}
