package cluster_test

import (
	"fmt"
	"testing"
	"time"
)

// TestThreeAgentsKillAndRestart is the foundation's end-to-end test: three
// real agent processes on loopback, direct mail their only mechanism; a
// write on one is read on the others; one is killed with SIGKILL, writes
// continue, and once restarted from its data directory it receives them
// through its peers' direct-mail outboxes; nothing acknowledged is lost
// anywhere.
func TestThreeAgentsKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	// Direct mail only: the restarted node can then receive the writes it
	// missed through its peers' outboxes and no other way.
	mailOnly := []string{"--rumor=false", "--anti-entropy=false"}
	n1 := newAgent(t, "n1")
	n2 := newAgent(t, "n2", n1.gossip)
	n3 := newAgent(t, "n3", n1.gossip)
	all := []*agent{n1, n2, n3}
	for _, a := range all {
		a.extra = mailOnly
		a.start()
	}
	for _, a := range all {
		a.waitFor(20*time.Second, "three alive members", func() bool {
			ms := a.members()
			return len(ms) == 3 && ms["n1"].State == "alive" && ms["n2"].State == "alive" && ms["n3"].State == "alive"
		})
	}

	acked := map[string]string{}
	n1.put("greeting", "hello")
	acked["greeting"] = "hello"
	for _, a := range []*agent{n2, n3} {
		a.waitFor(10*time.Second, "greeting", func() bool { v, ok := a.get("greeting"); return ok && v == "hello" })
	}
	for i := range 20 {
		k, v := fmt.Sprintf("before/%02d", i), fmt.Sprintf("v%d", i)
		all[i%3].put(k, v)
		acked[k] = v
	}

	// SIGKILL n3 and keep writing on n1 and n2.
	n3.kill()
	for i := range 20 {
		k, v := fmt.Sprintf("during/%02d", i), fmt.Sprintf("w%d", i)
		all[i%2].put(k, v)
		acked[k] = v
	}
	n1.waitFor(10*time.Second, "mail for n3 to reach the outbox", func() bool {
		return n1.metric("hearsay_directmail_outbox_records") > 0
	})

	// Restart n3 from its data directory (same addresses).
	n3.start()
	for _, a := range all {
		for k, v := range acked {
			a.waitFor(30*time.Second, "key "+k, func() bool { got, ok := a.get(k); return ok && got == v })
		}
	}
	if r := n1.metric(`hearsay_directmail_retried_mails_total`); r <= 0 {
		t.Fatalf("n1 retried %v mails; the restarted node should have been served from the outbox", r)
	}
	for _, a := range []*agent{n1, n2} {
		a.waitFor(20*time.Second, "outbox drained", func() bool { return a.metric("hearsay_directmail_outbox_records") == 0 })
	}
	n3.waitFor(20*time.Second, "n3 alive everywhere", func() bool {
		for _, a := range all {
			if a.members()["n3"].State != "alive" {
				return false
			}
		}
		return true
	})
}
