package cluster_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// quarantined returns the names a's members list shows quarantined.
func (a *agent) quarantined() map[string]bool {
	b, code, err := a.request("GET", "/v1/members", nil)
	if err != nil || code != 200 {
		return nil
	}
	var ms []struct {
		Name        string `json:"name"`
		Quarantined bool   `json:"quarantined"`
	}
	if json.Unmarshal(b, &ms) != nil {
		return nil
	}
	out := map[string]bool{}
	for _, m := range ms {
		if m.Quarantined {
			out[m.Name] = true
		}
	}
	return out
}

// Issue 11 item 5 on real processes: an agent that floods invented members
// on everything it sends (a faultinject build) is quarantined by every
// member of a 3-agent cluster; `hearsay members` shows it, the metrics
// count it, and the cluster keeps replicating.
func TestFlooderQuarantinedByCluster(t *testing.T) {
	n1 := newAgent(t, "q1")
	n1.start()
	n2 := newAgent(t, "q2", n1.gossip)
	n2.start()
	n3 := newAgent(t, "q3", n1.gossip)
	n3.start()
	honest := []*agent{n1, n2, n3}
	for _, a := range honest {
		a.waitFor(30*time.Second, "3 members", func() bool { return len(a.members()) >= 3 })
	}
	flood := newAgent(t, "flooder", n1.gossip)
	flood.bin = faultAgentBinary(t)
	flood.env = []string{"HEARSAY_FAULT_FLOOD_MEMBERS=64"}
	flood.start()
	// The members the flooder invented come back to it relayed, so its
	// own view fills with them and it reaches each honest member directly
	// only now and then (probes and gossip go mostly to invented
	// addresses): a member quarantines it on the flooder's own messages,
	// which may take a while on a loaded machine.
	for _, a := range honest {
		a.waitFor(90*time.Second, "the flooder quarantined", func() bool { return a.quarantined()["flooder"] })
		if q := a.quarantined(); len(q) != 1 {
			t.Fatalf("%s quarantines %v, want the flooder only", a.name, q)
		}
		if v := a.metric(`hearsay_offences_total{kind="member_flood"}`); v < 1 {
			t.Fatalf("%s: hearsay_offences_total{kind=\"member_flood\"} = %v", a.name, v)
		}
		if v := a.metric(`hearsay_quarantined_members`); v != 1 {
			t.Fatalf("%s: hearsay_quarantined_members = %v", a.name, v)
		}
	}
	out, err := exec.Command(binary, "members", "--addr", n2.http).CombinedOutput()
	if err != nil {
		t.Fatalf("hearsay members: %v: %s", err, out)
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "flooder ") {
			line = l
		}
	}
	if !strings.Contains(line, "quarantined") {
		t.Fatalf("hearsay members does not show the flooder quarantined:\n%s", out)
	}
	// The honest members still replicate among themselves.
	n1.put("after-flood", "1")
	for _, a := range honest[1:] {
		a.waitFor(20*time.Second, "after-flood", func() bool { _, ok := a.get("after-flood"); return ok })
	}
}
