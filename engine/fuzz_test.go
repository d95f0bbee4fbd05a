package engine_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
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
