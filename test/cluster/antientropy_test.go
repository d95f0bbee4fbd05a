package cluster_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// TestEmptyAgentCatchesUpByAntiEntropy starts an agent with an empty data
// directory next to a running cluster that already holds data: direct mail
// only carries new writes, so it is anti-entropy that must bring it the
// whole data set, deletions included.
func TestEmptyAgentCatchesUpByAntiEntropy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	n1 := newAgent(t, "n1")
	n1.start()
	n2 := newAgent(t, "n2", n1.gossip)
	n2.start()
	n2.waitFor(20*time.Second, "two alive members", func() bool { return len(n2.members()) == 2 })

	want := map[string]string{}
	for i := range 300 {
		k, v := fmt.Sprintf("data/%03d", i), fmt.Sprintf("value-%d", i)
		[]*agent{n1, n2}[i%2].put(k, v)
		want[k] = v
	}
	for i := range 30 {
		k := fmt.Sprintf("data/%03d", i*7)
		if _, code, err := n1.request("DELETE", "/v1/kv/"+k, nil); err != nil || code != 200 {
			t.Fatalf("delete %s: %d %v", k, code, err)
		}
		delete(want, k)
	}

	n3 := newAgent(t, "n3", n1.gossip)
	n3.start()
	n3.waitFor(20*time.Second, "status ready", func() bool {
		b, code, err := n3.request("GET", "/v1/status", nil)
		var st struct {
			Ready bool `json:"ready"`
		}
		return err == nil && code == 200 && json.Unmarshal(b, &st) == nil && st.Ready
	})
	for k, v := range want {
		n3.waitFor(60*time.Second, "key "+k, func() bool { got, ok := n3.get(k); return ok && got == v })
	}
	for i := range 30 {
		k := fmt.Sprintf("data/%03d", i*7)
		if _, ok := n3.get(k); ok {
			t.Fatalf("n3 serves deleted key %s", k)
		}
	}
}
