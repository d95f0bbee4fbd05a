package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/sim"
)

// TestDirectMailWindowBatches writes 50 times in 100 ms of virtual time on
// one node of five: with a 100 ms window the writes leave in one or two
// mails per peer instead of one per write, and all arrive within the window
// plus the link's latency after the last write.
func TestDirectMailWindowBatches(t *testing.T) {
	for _, window := range []time.Duration{0, 100 * time.Millisecond} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			cfg := func(c *engine.Config) {
				c.RumorMongering = false
				c.AntiEntropy = false
				c.DirectMailWindow = window
			}
			c := cluster(t, sim.Options{Seed: 3, Latency: 10 * time.Millisecond}, 5, cfg)
			n1 := c.Nodes()[0]
			before := n1.Engine.Stats().Mail.MailsSent
			var written []string
			for i := range 50 {
				key := fmt.Sprintf("k%d", i)
				if _, err := n1.Put(key, "v"); err != nil {
					t.Fatal(err)
				}
				written = append(written, key)
				if err := c.RunFor(2 * time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			// The last write's window closes 100 ms after the first
			// write of its window at most; then 10 ms of link.
			ok, err := c.RunUntil(150*time.Millisecond, func() bool {
				for _, nd := range c.Nodes()[1:] {
					for _, key := range written {
						if _, ok := nd.Get(key); !ok {
							return false
						}
					}
				}
				return true
			})
			if err != nil || !ok {
				t.Fatalf("writes did not reach every peer: %v", err)
			}
			mails := n1.Engine.Stats().Mail.MailsSent - before
			t.Logf("window %v: %d mails for 50 writes to 4 peers", window, mails)
			switch window {
			case 0:
				if mails < 4*40 {
					t.Errorf("without a window, %d mails: want about one per write per peer", mails)
				}
			default:
				if mails > 4*2 {
					t.Errorf("with a %v window, %d mails: want at most 2 per peer", window, mails)
				}
			}
		})
	}
}
