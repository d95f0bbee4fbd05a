package cluster_test

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	faultOnce   sync.Once
	faultBinary string
	faultErr    error
)

// faultAgentBinary builds, once, the CLI with the faultinject build tag: its
// clock and its store syncs can be made faulty through the environment
// (see faultinject.go and clockinject.go). The shipped binary has none of it.
func faultAgentBinary(t *testing.T) string {
	t.Helper()
	faultOnce.Do(func() {
		faultBinary = filepath.Join(filepath.Dir(binary), "hearsay-faultinject")
		_, file, _, _ := runtime.Caller(0)
		build := exec.Command("go", "build", "-tags", "faultinject", "-o", faultBinary, "./cmd/hearsay")
		build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			faultErr = err
			t.Logf("%s", out)
		}
	})
	if faultErr != nil {
		t.Fatalf("build the faultinject binary: %v", faultErr)
	}
	return faultBinary
}

type clockStatus struct {
	Ready       bool     `json:"ready"`
	NotReady    []string `json:"not_ready"`
	ClockOffset float64  `json:"clock_offset"`
	ClockPeers  int      `json:"clock_peers"`
}

func (a *agent) clockStatus() clockStatus {
	var st clockStatus
	b, code, err := a.request("GET", "/v1/status", nil)
	if err == nil && code == 200 {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// TestSkewedClockRefusesWritesAndRecovers: a3's wall clock jumps an hour
// ahead (a test-only clock hook in a faultinject build). Within a few
// seconds it refuses writes with 503 naming the offset and the bound, is
// not ready, and a write acknowledged by a1 meanwhile is not overwritten
// by anything from a3. Once the clock is set right, a3 writes again by
// itself.
func TestSkewedClockRefusesWritesAndRecovers(t *testing.T) {
	var body string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last answer: %s", body)
		}
	})
	clockFile := filepath.Join(t.TempDir(), "offset")
	if err := os.WriteFile(clockFile, []byte("0s"), 0o600); err != nil {
		t.Fatal(err)
	}
	a1 := newAgent(t, "a1")
	a1.start()
	a2 := newAgent(t, "a2", a1.gossip)
	a2.start()
	a3 := newAgent(t, "a3", a1.gossip)
	a3.bin, a3.env = faultAgentBinary(t), []string{"HEARSAY_FAULT_CLOCK_FILE=" + clockFile}
	a3.start()
	for _, a := range []*agent{a1, a2, a3} {
		a.waitFor(15*time.Second, "three members ready", func() bool {
			st := a.clockStatus()
			return st.Ready && len(a.members()) == 3
		})
	}
	a3.put("before", "ok")

	if err := os.WriteFile(clockFile, []byte("1h"), 0o600); err != nil {
		t.Fatal(err)
	}
	skewed := time.Now()
	a3.waitFor(10*time.Second, "writes refused for the clock", func() bool {
		b, code, err := a3.request("PUT", "/v1/kv/k", []byte("from a3, skewed"))
		body = string(b)
		// Its old samples no longer count once its clock is an hour on
		// ("not measured yet"); the next probe round trip measures the hour.
		return err == nil && code == 503 && strings.Contains(body, "ahead of")
	})
	t.Logf("a3 refused writes %v after its clock jumped: %s", time.Since(skewed).Round(time.Millisecond), strings.TrimSpace(body))
	if !strings.Contains(body, "max-clock-offset") || !strings.Contains(body, "ahead of") {
		t.Fatalf("the refusal does not name the offset and the bound: %s", body)
	}
	st := a3.clockStatus()
	if st.Ready || math.Abs(st.ClockOffset-3600) > 5 || !strings.Contains(strings.Join(st.NotReady, ";"), "clock") {
		t.Fatalf("a3 status while skewed: %+v", st)
	}
	b, code, _ := a3.request("GET", "/v1/health/ready", nil)
	if code != 503 || !strings.Contains(string(b), "clock") {
		t.Fatalf("ready while skewed: %d %s", code, b)
	}
	// a1's view of a3's clock, once a1's probes have reached a3.
	a1.waitFor(10*time.Second, "a1 measuring a3's clock an hour ahead", func() bool {
		b, _, _ := a1.request("GET", "/v1/members", nil)
		var ms []struct {
			Name        string   `json:"name"`
			ClockOffset *float64 `json:"clock_offset"`
		}
		if json.Unmarshal(b, &ms) != nil {
			return false
		}
		for _, m := range ms {
			if m.Name == "a3" && m.ClockOffset != nil && math.Abs(*m.ClockOffset-3600) < 5 {
				return true
			}
		}
		return false
	})

	// A write acknowledged by a1 while a3 is skewed stays the value
	// everywhere: a3 issued no version from its wrong clock.
	a1.put("k", "from a1")
	for _, a := range []*agent{a1, a2, a3} {
		a.waitFor(10*time.Second, "a1's write", func() bool { v, ok := a.get("k"); return ok && v == "from a1" })
	}

	if err := os.WriteFile(clockFile, []byte("0s"), 0o600); err != nil {
		t.Fatal(err)
	}
	fixed := time.Now()
	a3.waitFor(15*time.Second, "writes accepted again", func() bool {
		b, code, err := a3.request("PUT", "/v1/kv/after", []byte("ok"))
		body = string(b)
		return err == nil && code == 200
	})
	t.Logf("a3 wrote again %v after its clock was fixed", time.Since(fixed).Round(time.Millisecond))
	a3.waitFor(10*time.Second, "ready again", func() bool { return a3.clockStatus().Ready })
	a3.put("k", "from a3, fixed")
	for _, a := range []*agent{a1, a2} {
		a.waitFor(10*time.Second, "a3's later write", func() bool { v, ok := a.get("k"); return ok && v == "from a3, fixed" })
	}
	if len(a3.logLines("writes refused: clock offset")) == 0 {
		t.Fatal("a3 did not log the clock fault")
	}
}
