package hearsay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
)

// Five real nodes on loopback with the broadcast tree as their only
// mechanism (no direct mail, rumors or anti-entropy): writes on every node
// reach every other, carried by GOSSIP over the transport.
func TestPlumtreeLoopback(t *testing.T) {
	ctx := context.Background()
	treeOnly := func(cfg *hearsay.Config) {
		cfg.Protocol.DirectMail = false
		cfg.Protocol.RumorMongering = false
		cfg.Protocol.AntiEntropy = false
		cfg.Protocol.Plumtree = true
	}
	const n = 5
	var nodes []*hearsay.Node
	seed := ""
	for i := range n {
		var seeds []string
		if i > 0 {
			seeds = []string{seed}
		}
		nd := openNodeWith(t, fmt.Sprintf("t%d", i), t.TempDir(), seeds, treeOnly)
		if i == 0 {
			seed = nd.Status().Address
		}
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		waitFor(t, 20*time.Second, "membership", func() bool { return nd.Status().Alive == n })
	}
	type write struct {
		key     string
		version hearsay.Version
	}
	var writes []write
	for round := range 3 {
		for i, nd := range nodes {
			key := fmt.Sprintf("k%d-%d", round, i)
			v, err := nd.Put(ctx, []byte(key), []byte("tree"))
			if err != nil {
				t.Fatal(err)
			}
			writes = append(writes, write{key, v})
		}
	}
	for _, nd := range nodes {
		for _, w := range writes {
			waitFor(t, 20*time.Second, "replication of "+w.key, func() bool {
				e, err := nd.Get(ctx, []byte(w.key))
				return err == nil && e.Version == w.version
			})
		}
	}
}
