package engine_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// verifies reports whether r's signature verifies with the key of the
// node certificate of name.
func verifies(t *testing.T, c *sim.Cluster, name string, r store.Record) bool {
	t.Helper()
	id, err := c.Identity(name)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(id.Cert())
	if err != nil {
		t.Fatal(err)
	}
	return r.Version.Node == id.NodeID() && ed25519.Verify(cert.PublicKey.(ed25519.PublicKey), engine.SignedBytes(r), r.Sig)
}

func TestSignedClusterReplicates(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 31, Latency: time.Millisecond, Signed: true}, 3, nil)
	var recs []store.Record
	for i, nd := range c.Nodes() {
		r, err := nd.Put("k"+nd.Name, strings.Repeat("v", i*100))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	del, err := c.Nodes()[0].Delete("kn1")
	if err != nil {
		t.Fatal(err)
	}
	recs[0] = del
	ok, err := c.RunUntil(time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			for _, r := range recs {
				if !holds(nd, string(r.Key), r.Version) {
					return false
				}
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("signed writes did not replicate: %v", err)
	}
	for _, nd := range c.Nodes() {
		for i, want := range recs {
			got, _ := nd.Get(string(want.Key))
			if len(got.Sig) != engine.SigLen || !verifies(t, c, c.Nodes()[i].Name, got) {
				t.Fatalf("%s holds %s without its origin's valid signature (%x)", nd.Name, want.Key, got.Sig)
			}
		}
		if n := nd.Engine.NumCerts(); n != 3 {
			t.Fatalf("%s holds %d certificates, want 3", nd.Name, n)
		}
		if s := nd.Engine.Stats(); s.SigRefused != 0 {
			t.Fatalf("%s refused %d honest records", nd.Name, s.SigRefused)
		}
	}
	// Records received again (mail, then rumors) are not verified again.
	if err := c.RunFor(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	var skipped uint64
	for _, nd := range c.Nodes() {
		skipped += nd.Engine.Stats().SigSkipped
	}
	if skipped == 0 {
		t.Error("no duplicate record was spared its verification")
	}
	// Certificates are kept in the store: a restarted node has them before
	// it hears from anyone.
	n3 := c.Nodes()[2]
	n3.Crash()
	if err := n3.Restart(); err != nil {
		t.Fatal(err)
	}
	if n := n3.Engine.NumCerts(); n != 3 {
		t.Fatalf("after a restart n3 holds %d certificates, want 3", n)
	}
}

// TestRelayCannotForge runs, on each path a record can take to a node, a
// relay that forwards another node's record altered, invented under the
// origin's id with the relay's own (valid) key, or stripped of its
// signature. The victim is cut off from the origin, so it hears of the
// record only through the relay. Untouched, the relayed record is
// accepted; tampered, it is refused, counted and reported as an offence,
// and never merged.
func TestRelayCannotForge(t *testing.T) {
	paths := []struct {
		name  string
		value string
		cfg   func(*engine.Config)
	}{
		{"mail", "genuine", func(cfg *engine.Config) { cfg.RumorMongering, cfg.AntiEntropy = false, false }},
		{"rumor", "genuine", func(cfg *engine.Config) { cfg.DirectMail, cfg.AntiEntropy = false, false }},
		{"fetch", strings.Repeat("genuine", 10_000), func(cfg *engine.Config) { cfg.DirectMail, cfg.AntiEntropy = false, false }},
		{"plumtree", "genuine", func(cfg *engine.Config) {
			cfg.DirectMail, cfg.RumorMongering, cfg.AntiEntropy, cfg.Plumtree = false, false, false, true
		}},
		{"anti-entropy", "genuine", func(cfg *engine.Config) {
			cfg.DirectMail, cfg.RumorMongering = false, false
			cfg.AE.Interval = time.Second
		}},
	}
	variants := []string{"untouched", "altered", "invented", "stripped"}
	for _, p := range paths {
		for _, v := range variants {
			t.Run(p.name+"/"+v, func(t *testing.T) {
				cfg := func(c *engine.Config) {
					p.cfg(c)
					c.Membership.SuspicionTimeout = time.Hour
				}
				c := cluster(t, sim.Options{Seed: 32, Latency: time.Millisecond, Signed: true}, 3, cfg)
				n1, n2, n3 := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
				relayID, err := c.Identity("n2")
				if err != nil {
					t.Fatal(err)
				}
				originID := n1.Engine.Self().NodeID
				c.Cut("n1", "n3")
				tampered := 0
				c.Tamper = func(from *sim.Node, to string, env *wire.Envelope) {
					if from != n2 || to != "n3" {
						return
					}
					var recs []*wire.Record
					switch b := env.Body.(type) {
					case *wire.Envelope_Mail:
						// Direct mail carries only its sender's writes: the
						// relay adds the origin's record to its own.
						if r, ok := n2.Get("k"); ok {
							b.Mail.Records = append(b.Mail.Records, wire.FromStore(r.Clone()))
						}
						recs = b.Mail.Records
					case *wire.Envelope_Rumor:
						recs = b.Rumor.Records
					case *wire.Envelope_AeRecords:
						recs = b.AeRecords.Records
					case *wire.Envelope_PlumGossip:
						recs = b.PlumGossip.Records
					}
					for _, r := range recs {
						if r.Node != originID {
							continue
						}
						tampered++
						switch v {
						case "altered":
							r.Value = []byte("forged")
						case "invented":
							r.Value = []byte("forged")
							r.Sig = relayID.Sign(engine.SignedBytes(r.Store()))
						case "stripped":
							r.Sig = nil
						}
					}
				}
				rec, err := n1.Put("k", p.value)
				if err != nil {
					t.Fatal(err)
				}
				if ok, err := c.RunUntil(time.Minute, func() bool { return holds(n2, "k", rec.Version) }); err != nil || !ok {
					t.Fatalf("the relay never got the record: %v", err)
				}
				if p.name == "mail" {
					if _, err := n2.Put("k2", "relay's own"); err != nil {
						t.Fatal(err)
					}
				}
				if v == "untouched" {
					ok, err := c.RunUntil(time.Minute, func() bool { return holds(n3, "k", rec.Version) })
					if err != nil || !ok {
						t.Fatalf("the relayed record never reached n3 by %s: %v", p.name, err)
					}
					if got, _ := n3.Get("k"); string(got.Value) != p.value {
						t.Fatalf("n3 holds %.20q", got.Value)
					}
				} else if err := c.RunFor(30 * time.Second); err != nil {
					t.Fatal(err)
				}
				if tampered == 0 {
					t.Fatalf("the relay sent n3 no record of n1's by %s", p.name)
				}
				if p.name == "fetch" && n2.Engine.Stats().Rumor.Served == 0 {
					t.Fatal("the record did not travel by fetch")
				}
				s, off := n3.Engine.Stats(), n3.Engine.Offences()
				if v == "untouched" {
					if s.SigRefused != 0 || off[engine.OffenceSignature] != 0 {
						t.Fatalf("honest relay refused: %d records, %d offences", s.SigRefused, off[engine.OffenceSignature])
					}
					return
				}
				if got, ok := n3.Get("k"); ok {
					t.Fatalf("n3 merged the %s record: %.20q (sig %x)", v, got.Value, got.Sig)
				}
				if s.SigRefused == 0 || s.RecordsRefused < s.SigRefused || off[engine.OffenceSignature] == 0 {
					t.Fatalf("refusal not counted: SigRefused %d, RecordsRefused %d, offences %v", s.SigRefused, s.RecordsRefused, off)
				}
			})
		}
	}
}

// signedEngine returns a bare engine (no membership traffic needed) named
// name with its certificate from ca.
func signedEngine(t *testing.T, ca *certs.MemoryCA, name string) (*engine.Engine, *memstore.Store, *certs.Identity) {
	t.Helper()
	nd, err := ca.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	id := certs.NewIdentity(nd)
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.Addr, cfg.NodeID, cfg.Signer = name, name, id.NodeID(), id
	cfg.MaxClockOffset = 0
	st := memstore.New()
	e, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, id.NodeID())), sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	e.Ready()
	return e, st, id
}

// envelopes returns the envelopes of rd whose body is of type T.
func bodies[T any](rd engine.Ready, get func(*wire.Envelope) T) []*wire.Envelope {
	var out []*wire.Envelope
	for _, m := range rd.Messages {
		var zero T
		if any(get(m.Env)) != any(zero) {
			out = append(out, m.Env)
		}
	}
	return out
}

// A record whose origin's certificate is not held is refused and not
// acknowledged; the certificate is asked of the sender, and the retry is
// accepted.
func TestUnknownOriginCertificateFetched(t *testing.T) {
	ca, err := certs.NewMemoryCA(7, sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	a, ast, _ := signedEngine(t, ca, "a")
	b, _, _ := signedEngine(t, ca, "b")
	now := sim.Epoch.Add(time.Second)
	rec, err := b.Write(now, []byte("k"), []byte("v"), false)
	if err != nil {
		t.Fatal(err)
	}
	b.Ready()
	mail := &wire.Envelope{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 9, Records: []*wire.Record{wire.FromStore(rec)}}}}
	if err := a.Step(now, mail); !errors.Is(err, engine.ErrBadRecord) {
		t.Fatalf("record of an unknown origin: err %v, want ErrBadRecord", err)
	}
	if _, ok, _ := ast.Get([]byte("k")); ok {
		t.Fatal("record of an unknown origin was merged")
	}
	ackDue := now.Add(engine.DefaultConfig().Mail.AckDelay)
	if err := a.Tick(ackDue); err != nil {
		t.Fatal(err)
	}
	rd := a.Ready()
	if acks := bodies(rd, (*wire.Envelope).GetMailAck); len(acks) != 0 {
		t.Fatal("mail with a record of an unknown origin was acknowledged: the sender would not retry")
	}
	reqs := bodies(rd, (*wire.Envelope).GetCertRequest)
	if len(reqs) != 1 || reqs[0].GetCertRequest().NodeIds[0] != rec.Version.Node {
		t.Fatalf("want one certificate request for %016x, got %v", rec.Version.Node, reqs)
	}
	if s := a.Stats(); s.UnknownSigner != 1 || s.SigRefused != 0 || a.Offences()[engine.OffenceSignature] != 0 {
		t.Fatalf("an unknown origin is no offence: stats %+v, offences %v", s, a.Offences())
	}
	// b answers from its own certificate.
	reqs[0].From, reqs[0].FromAddr, reqs[0].Cluster = "a", "a", "hearsay"
	if err := b.Step(now, reqs[0]); err != nil {
		t.Fatal(err)
	}
	replies := bodies(b.Ready(), (*wire.Envelope).GetCertReply)
	if len(replies) != 1 {
		t.Fatalf("b did not answer the certificate request")
	}
	if err := a.Step(now, replies[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.Step(now, mail); err != nil {
		t.Fatalf("retry after the certificate came: %v", err)
	}
	if got, ok, _ := ast.Get([]byte("k")); !ok || got.Version != rec.Version {
		t.Fatal("retried record not merged")
	}
	if err := a.Tick(ackDue.Add(engine.DefaultConfig().Mail.AckDelay)); err != nil {
		t.Fatal(err)
	}
	if acks := bodies(a.Ready(), (*wire.Envelope).GetMailAck); len(acks) != 1 {
		t.Fatal("retried mail not acknowledged")
	}
}

// A certificate from another CA is refused, and is an offence of its
// sender; so is one whose key does not sign what its owner's records carry.
func TestForeignCertificateRefused(t *testing.T) {
	ca, err := certs.NewMemoryCA(7, sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewMemoryCA(8, sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	a, ast, _ := signedEngine(t, ca, "a")
	// m is a node of another CA posing as b: same name, so same node id.
	m, _, _ := signedEngine(t, other, "b")
	now := sim.Epoch.Add(time.Second)
	mnd, _ := other.Node("b")
	err = a.Step(now, &wire.Envelope{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_CertReply{CertReply: &wire.CertReply{Certs: [][]byte{mnd.Cert.Raw}}}})
	if err == nil || !strings.Contains(err.Error(), "not signed by this cluster's CA") {
		t.Fatalf("certificate of another CA: err %v", err)
	}
	if s := a.Stats(); s.CertsRefused != 1 || a.NumCerts() != 1 || a.Offences()[engine.OffenceCertificate] != 1 {
		t.Fatalf("stats %+v, %d certificates, offences %v", s, a.NumCerts(), a.Offences())
	}
	// Its records stay unverifiable.
	rec, err := m.Write(now, []byte("k"), []byte("v"), false)
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Step(now, &wire.Envelope{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{wire.FromStore(rec)}}}})
	if _, ok, _ := ast.Get([]byte("k")); ok {
		t.Fatal("record signed under another CA merged")
	}
}

// The node id is bound to the certificate: an engine given another id
// than its certificate's does not start.
func TestNodeIDBoundToCertificate(t *testing.T) {
	ca, err := certs.NewMemoryCA(7, sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := ca.Node("a")
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.Addr, cfg.Signer = "a", "a", certs.NewIdentity(nd)
	cfg.NodeID = certs.NodeID("b")
	_, err = engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 1)), sim.Epoch)
	if err == nil || !strings.Contains(err.Error(), "node certificate binds") {
		t.Fatalf("engine with another node id than its certificate's: err %v", err)
	}
}

// A signed node and an unsigned one refuse each other at join; an
// unsigned cluster stores no signatures, whatever a peer sends.
func TestSignedAndUnsignedDoNotMix(t *testing.T) {
	c := sim.New(sim.Options{Seed: 33, Latency: time.Millisecond, Signed: true})
	if _, err := c.AddNode("n1", nil); err != nil {
		t.Fatal(err)
	}
	n2, err := c.AddNode("n2", func(cfg *engine.Config) { cfg.Signer, cfg.NodeID = nil, 2 })
	if err != nil {
		t.Fatal(err)
	}
	n2.Join("n1")
	if err := c.RunFor(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n2.Engine.Joined() || !strings.Contains(n2.Engine.JoinError(), "sign") {
		t.Fatalf("unsigned node joined a signed one: joined %v, error %q", n2.Engine.Joined(), n2.Engine.JoinError())
	}

	st := memstore.New()
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "u", 1, "u"
	cfg.MaxClockOffset = 0
	u, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, 2)), sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	r := &wire.Record{Key: []byte("k"), Value: []byte("v"), Hlc: uint64(sim.Epoch.UnixMilli()) << 16, Node: 2, Sig: make([]byte, 64)}
	if err := u.Step(sim.Epoch, &wire.Envelope{Cluster: "hearsay", From: "x", FromAddr: "x", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{r}}}}); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := st.Get([]byte("k")); !ok || got.Sig != nil {
		t.Fatalf("unsigned cluster: record %v stored with signature %x", ok, got.Sig)
	}
}

// WriteBatch refuses bad writes one by one, issues increasing versions to
// the rest, and signs each (in one batch) with the node's key.
func TestWriteBatchSignsEachWrite(t *testing.T) {
	ca, err := certs.NewMemoryCA(9, sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	e, st, id := signedEngine(t, ca, "a")
	cert, err := x509.ParseCertificate(id.Cert())
	if err != nil {
		t.Fatal(err)
	}
	ops := []engine.WriteOp{{Key: []byte("k1"), Value: []byte("v1")}, {Key: nil, Value: []byte("no key")}}
	for i := range 20 {
		ops = append(ops, engine.WriteOp{Key: []byte{'b', byte(i)}, Value: []byte("v"), Tombstone: i%3 == 0})
	}
	recs, errs := e.WriteBatch(sim.Epoch.Add(time.Second), ops)
	if !errors.Is(errs[1], store.ErrEmptyKey) {
		t.Fatalf("write without a key: err %v", errs[1])
	}
	var last store.Version
	for i, r := range recs {
		if i == 1 {
			continue
		}
		if errs[i] != nil {
			t.Fatalf("write %d: %v", i, errs[i])
		}
		if r.Version.Compare(last) <= 0 || r.Version.Node != id.NodeID() {
			t.Fatalf("write %d: version %v after %v", i, r.Version, last)
		}
		last = r.Version
		held, ok, err := st.Get(r.Key)
		if err != nil || !ok || held.Version != r.Version || !ed25519.Verify(cert.PublicKey.(ed25519.PublicKey), engine.SignedBytes(held), held.Sig) {
			t.Fatalf("write %d stored %v %v without a valid signature", i, ok, err)
		}
	}
	if n := len(e.Ready().Changes); n != len(ops)-1 {
		t.Fatalf("%d changes announced, want %d", n, len(ops)-1)
	}
}

// A third node cannot make claims for others: n2 tells n3 that n1 left,
// that n1 itself declared n1 dead, and that n1 is alive at another
// address, each at a higher incarnation and signed with n2's own valid
// key. In a certificate cluster n3 refuses them all, counts them and
// reports n2; unsigned, the same lies are believed (the control).
func TestForgedMembershipClaimsRefused(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			long := func(cfg *engine.Config) { cfg.Membership.SuspicionTimeout = time.Hour }
			c := cluster(t, sim.Options{Seed: 34, Latency: time.Millisecond, Signed: true}, 3, func(cfg *engine.Config) {
				long(cfg)
				if !signed {
					cfg.Signer, cfg.NodeID = nil, certs.NodeID(cfg.Name)
				}
			})
			n1, n2, n3 := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
			relay, err := c.Identity("n2")
			if err != nil {
				t.Fatal(err)
			}
			self := n1.Engine.Self()
			lies := []*wire.Member{
				{Name: "n1", Address: "n1", NodeId: self.NodeID, Incarnation: self.Incarnation + 10, State: wire.State_LEFT},
				{Name: "n1", Address: "n1", NodeId: self.NodeID, Incarnation: self.Incarnation + 20, State: wire.State_DEAD, From: "n1"},
				{Name: "n1", Address: "n2", NodeId: self.NodeID, Incarnation: self.Incarnation + 30, State: wire.State_ALIVE},
			}
			for _, u := range lies {
				u.Sig = relay.Sign(engine.MemberSignedBytes(u))
			}
			sent := 0
			c.Tamper = func(from *sim.Node, to string, env *wire.Envelope) {
				if from == n2 && to == "n3" && sent < 30 {
					env.Members = append(env.Members, lies[sent%len(lies)])
					sent++
				}
			}
			if err := c.RunFor(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			if sent < len(lies) {
				t.Fatalf("n2 sent n3 only %d messages", sent)
			}
			var seen membership.Member
			for _, m := range n3.Engine.Members() {
				if m.Name == "n1" {
					seen = m
				}
			}
			believed := seen.State != wire.State_ALIVE || seen.Addr != "n1" || seen.Incarnation >= self.Incarnation+10
			if !signed {
				if !believed {
					t.Fatalf("control: unsigned, the lies were not believed (n3 sees %+v): the test proves nothing", seen)
				}
				return
			}
			if believed {
				t.Fatalf("n3 believed a forged claim: n1 is %v at %s, incarnation %d", seen.State, seen.Addr, seen.Incarnation)
			}
			if s := n3.Engine.Stats(); s.ClaimsRefused == 0 || n3.Engine.Offences()[engine.OffenceClaim] == 0 {
				t.Fatalf("forged claims not counted: %+v, offences %v", s, n3.Engine.Offences())
			}
		})
	}
}

// TestRevokedOriginRefused: once n3 is revoked (engine.Config.Revoked says
// since when), its records with later versions are refused by every node,
// counted apart from forgeries (the relay is not at fault), while its
// records from before the revocation still replicate.
func TestRevokedOriginRefused(t *testing.T) {
	var revokedAt time.Time // zero: not revoked yet
	revoked := func(name string) (time.Time, bool) {
		if name == "n3" && !revokedAt.IsZero() {
			return revokedAt, true
		}
		return time.Time{}, false
	}
	c := cluster(t, sim.Options{Seed: 35, Latency: time.Millisecond, Signed: true}, 3, func(cfg *engine.Config) {
		cfg.Revoked = revoked
	})
	n1, n3 := c.Nodes()[0], c.Nodes()[2]
	before, err := n3.Put("before", "v")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.RunUntil(10*time.Second, func() bool { return holds(n1, "before", before.Version) }); err != nil || !ok {
		t.Fatalf("n3's write before the revocation did not replicate: %v", err)
	}
	revokedAt = c.Now()
	if err := c.RunFor(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	after, err := n3.Put("after", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.Nodes()[:2] {
		if _, ok := nd.Get("after"); ok {
			t.Errorf("%s took %s's write made after its revocation (%v)", nd.Name, n3.Name, after.Version)
		}
		s := nd.Engine.Stats()
		if s.RevokedRefused == 0 {
			t.Errorf("%s counted no record refused for a revoked origin", nd.Name)
		}
		if s.SigRefused != 0 {
			t.Errorf("%s counted %d forgeries: a revoked origin's records are not the relay's fault", nd.Name, s.SigRefused)
		}
		if !holds(nd, "before", before.Version) {
			t.Errorf("%s lost n3's write from before the revocation", nd.Name)
		}
	}
}
