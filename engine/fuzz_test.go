package engine_test

import (
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// FuzzStep feeds arbitrary decodable envelopes to an engine: whatever a
// peer sends, the engine must neither panic nor break its invariants.
func FuzzStep(f *testing.F) {
	for _, env := range []*wire.Envelope{
		{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_Ping{Ping: &wire.Ping{Seq: 1, Target: "a"}}},
		{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_Join{Join: &wire.Join{}}},
		{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_PingReq{PingReq: &wire.PingReq{Seq: 1, Target: "c", TargetAddress: "c"}}},
		{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_Nack{Nack: &wire.Nack{Seq: 1}}},
		{Cluster: "hearsay", From: "b", Members: []*wire.Member{{Name: "c", State: wire.State_SUSPECT, Incarnation: 1, From: "d"}}},
		{Cluster: "hearsay", From: "b", Members: []*wire.Member{{Name: "a", State: wire.State_DEAD, Incarnation: 9}}},
		{Cluster: "hearsay", From: "b", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{{Key: []byte("k"), Hlc: 1, Node: 2}}}}},
		{Cluster: "hearsay", From: "b", Body: &wire.Envelope_MailAck{MailAck: &wire.MailAck{Id: 1}}},
		{Cluster: "hearsay", From: "b", Body: &wire.Envelope_JoinReply{JoinReply: &wire.JoinReply{Members: []*wire.Member{{Name: "c", Address: "c"}}}}},
	} {
		b, err := wire.Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		env, err := wire.Unmarshal(frame, 1<<16)
		if err != nil {
			return
		}
		cfg := engine.DefaultConfig()
		cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a"
		now := sim.Epoch
		e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 1)), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Write(now, []byte("k"), []byte("v"), false); err != nil {
			t.Fatal(err)
		}
		_ = e.Step(now, env)
		for i := range 5 {
			if err := e.Tick(now.Add(time.Duration(i) * time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		if e.Self().Name != "a" {
			t.Fatal("self entry replaced")
		}
		_ = e.Ready()
	})
}

// FuzzStepSigned is FuzzStep for a node of a certificate cluster: records
// with any signature, certificate requests and replies, and member lists
// carrying any certificate bytes must never crash it, and no record that
// does not carry its origin's valid signature may be merged.
func FuzzStepSigned(f *testing.F) {
	ca, err := certs.NewMemoryCA(1, sim.Epoch)
	if err != nil {
		f.Fatal(err)
	}
	a, err := ca.Node("a")
	if err != nil {
		f.Fatal(err)
	}
	b, err := ca.Node("b")
	if err != nil {
		f.Fatal(err)
	}
	bID := certs.NewIdentity(b)
	good := store.Record{Key: []byte("g"), Value: []byte("v"), Version: store.Version{HLC: uint64(sim.Epoch.UnixMilli()) << 16, Node: bID.NodeID()}}
	good.Sig = bID.Sign(engine.SignedBytes(good))
	for _, env := range []*wire.Envelope{
		{Cluster: "hearsay", From: "b", FromAddr: "b", FromId: bID.NodeID(), Body: &wire.Envelope_CertReply{CertReply: &wire.CertReply{Certs: [][]byte{b.Cert.Raw, {1, 2, 3}}}}},
		{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_CertRequest{CertRequest: &wire.CertRequest{NodeIds: []uint64{certs.NodeID("a"), 7}}}},
		{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_Join{Join: &wire.Join{Members: []*wire.Member{{Name: "b", Address: "b", NodeId: bID.NodeID(), Cert: b.Cert.Raw}}}}},
		{Cluster: "hearsay", From: "b", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{wire.FromStore(good), {Key: []byte("k"), Hlc: 1, Node: bID.NodeID(), Sig: make([]byte, 64)}}}}},
		{Cluster: "hearsay", From: "b", Body: &wire.Envelope_Rumor{Rumor: &wire.Rumor{Id: 1, Records: []*wire.Record{wire.FromStore(good)}}}},
	} {
		fb, err := wire.Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fb, true)
		f.Add(fb, false)
	}
	f.Fuzz(func(t *testing.T, frame []byte, knowB bool) {
		env, err := wire.Unmarshal(frame, 1<<16)
		if err != nil {
			return
		}
		cfg := engine.DefaultConfig()
		id := certs.NewIdentity(a)
		cfg.Name, cfg.NodeID, cfg.Addr, cfg.Signer = "a", id.NodeID(), "a", id
		cfg.MaxClockOffset = 0
		now := sim.Epoch
		st := memstore.New()
		e, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, 1)), now)
		if err != nil {
			t.Fatal(err)
		}
		if knowB {
			cert := &wire.Envelope{Cluster: "hearsay", From: "b", FromAddr: "b", Body: &wire.Envelope_CertReply{CertReply: &wire.CertReply{Certs: [][]byte{b.Cert.Raw}}}}
			if err := e.Step(now, cert); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.Write(now, []byte("k"), []byte("v"), false); err != nil {
			t.Fatal(err)
		}
		_ = e.Step(now, env)
		for i := range 3 {
			if err := e.Tick(now.Add(time.Duration(i) * time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		_ = e.Ready()
		// Whatever was merged carries a signature that verifies against
		// its origin's certificate, a or b.
		err = st.Scan(nil, nil, func(r store.Record) bool {
			var pub ed25519.PublicKey
			switch r.Version.Node {
			case id.NodeID():
				pub = a.Cert.PublicKey.(ed25519.PublicKey)
			case bID.NodeID():
				pub = b.Cert.PublicKey.(ed25519.PublicKey)
			default:
				t.Fatalf("merged a record of unknown origin %016x", r.Version.Node)
			}
			if !ed25519.Verify(pub, engine.SignedBytes(r), r.Sig) {
				t.Fatalf("merged %q without a valid signature", r.Key)
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
