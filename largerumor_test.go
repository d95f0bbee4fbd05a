package hearsay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
)

// TestLargeRumorsReachEveryLoopbackNode writes a 256 KiB and a 1 MiB value
// on one node of 16 real nodes on loopback with rumor mongering as the only
// replication mechanism (no direct mail, no anti-entropy to repair what the
// rumors miss), and checks that both reach every other node: the bodies are
// announced, fetched over streams from one announcer at a time, and the
// rumors stay hot until the fetches settle (issue 14 item 3). The deadline
// is a bound for a loaded machine, not a measurement.
func TestLargeRumorsReachEveryLoopbackNode(t *testing.T) {
	if testing.Short() {
		t.Skip("16 nodes and 1.25 MiB per node")
	}
	const n = 16
	nodes := make([]*hearsay.Node, n)
	for i := range nodes {
		cfg := hearsay.DefaultConfig()
		cfg.Name, cfg.BindAddr = fmt.Sprintf("r%02d", i), "127.0.0.1:0"
		if i > 0 {
			cfg.Seeds = []string{nodes[0].Status().Address}
		}
		cfg.Protocol.DirectMail = false
		cfg.Protocol.RumorMongering = true
		cfg.Protocol.AntiEntropy = false
		cfg.Protocol.Membership.SuspicionTimeout = time.Minute
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		nd, err := hearsay.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nd.Close() })
		nodes[i] = nd
	}
	waitFor(t, time.Minute, "16 live members at every node", func() bool {
		for _, nd := range nodes {
			if nd.Status().Alive < n {
				return false
			}
		}
		return true
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(14, 3))
	want := map[string][]byte{}
	for _, size := range []int{256 << 10, 1 << 20} {
		v := make([]byte, size)
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		want[fmt.Sprintf("big/%d", size)] = v
	}
	// Watch before writing, so that no delivery goes unseen.
	type arrival struct {
		node int
		key  string
	}
	arrivals := make(chan arrival, 2*n)
	for i, nd := range nodes[1:] {
		events, err := nd.Watch(ctx, []byte("big/"))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for ev := range events {
				if bytes.Equal(ev.Value, want[string(ev.Key)]) {
					arrivals <- arrival{i + 1, string(ev.Key)}
				}
			}
		}()
	}
	for k, v := range want {
		if _, err := nodes[0].Put(ctx, []byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	got := map[arrival]bool{}
	for len(got) < (n-1)*len(want) {
		select {
		case a := <-arrivals:
			got[a] = true
		case <-ctx.Done():
			for i := 1; i < n; i++ {
				for k := range want {
					if !got[arrival{i, k}] {
						t.Errorf("%s never got %s", nodes[i].Status().Name, k)
					}
				}
			}
			t.Fatalf("%d of %d deliveries before the deadline", len(got), (n-1)*len(want))
		}
	}
	for i, nd := range nodes[1:] {
		for k, v := range want {
			rec, err := nd.Get(ctx, []byte(k))
			if err != nil || !bytes.Equal(rec.Value, v) {
				t.Errorf("node %d: Get %s: %d bytes, %v", i+1, k, len(rec.Value), err)
			}
		}
	}
}
