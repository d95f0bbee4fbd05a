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

// invented returns the members of a's view, alive or suspect, that the
// flooder invented (named fake-*).
func (a *agent) invented() []string {
	var out []string
	for name, m := range a.members() {
		if strings.HasPrefix(name, "fake-") && (m.State == "alive" || m.State == "suspect") {
			out = append(out, name)
		}
	}
	return out
}

// Issue 11 item 5 on real processes: an agent that floods invented members
// on everything it sends (a faultinject build) is quarantined by every
// member of a 3-agent cluster; `hearsay members` shows it, the metrics
// count it, the members it invented leave the honest views within 15 s of
// its quarantine, and the cluster keeps replicating.
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
	start := time.Now()
	// Honest members do not relay the members the flooder invented (they
	// hold second-hand members back until heard from), so its own view
	// stays small and it reaches each honest member directly several
	// times a second: two seconds of flood get it quarantined. The bound
	// leaves room for a loaded machine.
	for _, a := range honest {
		a.waitFor(30*time.Second, "the flooder quarantined", func() bool { return a.quarantined()["flooder"] })
		t.Logf("%s quarantined the flooder %v after it started", a.name, time.Since(start).Round(100*time.Millisecond))
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
	// What it invented goes with it: members vouched for by it alone are
	// forgotten when it is quarantined, and those vouched for by an honest
	// member too (there are none unless one relayed them) when a probe
	// finds nobody there.
	quarantined := time.Now()
	for _, a := range honest {
		a.waitFor(15*time.Second, "no invented member alive", func() bool { return len(a.invented()) == 0 })
		if v := a.metric(`hearsay_members_forgotten_total{reason="voucher_quarantined"}`); v < 1 {
			t.Fatalf("%s: hearsay_members_forgotten_total{reason=\"voucher_quarantined\"} = %v", a.name, v)
		}
	}
	t.Logf("invented members gone from every honest view %v after the last quarantine", time.Since(quarantined).Round(100*time.Millisecond))
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
