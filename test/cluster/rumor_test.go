package cluster_test

import (
	"fmt"
	"testing"
	"time"
)

// TestRumorsAloneAcrossFiveAgents switches direct mail and anti-entropy off
// on five real agents: a write on one reaches all the others through rumor
// mongering alone.
func TestRumorsAloneAcrossFiveAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	only := []string{"--direct-mail=false", "--anti-entropy=false", "--gossip-interval", "100ms"}
	seed := newAgent(t, "r1")
	seed.extra = only
	seed.start()
	agents := []*agent{seed}
	for i := 2; i <= 5; i++ {
		a := newAgent(t, fmt.Sprintf("r%d", i), seed.gossip)
		a.extra = only
		a.start()
		agents = append(agents, a)
	}
	for _, a := range agents {
		a.waitFor(30*time.Second, "five alive members", func() bool {
			ms := a.members()
			alive := 0
			for _, m := range ms {
				if m.State == "alive" {
					alive++
				}
			}
			return alive == 5
		})
	}
	for i := range 10 {
		agents[i%5].put(fmt.Sprintf("rumor/%d", i), fmt.Sprintf("v%d", i))
	}
	for _, a := range agents {
		for i := range 10 {
			k, v := fmt.Sprintf("rumor/%d", i), fmt.Sprintf("v%d", i)
			a.waitFor(20*time.Second, "key "+k, func() bool { got, ok := a.get(k); return ok && got == v })
		}
	}
	for _, a := range agents {
		if mails := a.metric(`hearsay_directmail_sent_mails_total`); mails != 0 {
			t.Fatalf("%s sent %v direct mails with direct mail off", a.name, mails)
		}
		if got := a.metric(`hearsay_messages_received_total{kind="ae_start"}`); got > 0 {
			t.Fatalf("%s received %v anti-entropy exchanges with anti-entropy off", a.name, got)
		}
	}
	var rumors float64
	for _, a := range agents {
		rumors += a.metric(`hearsay_messages_sent_total{kind="rumor"}`)
	}
	if rumors < 4 {
		t.Fatalf("only %v rumor messages sent in all", rumors)
	}
}
