package cluster_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine/membership"
)

// deadBound derives how long five agents with the default timers may take
// to list a SIGKILLed one dead (see detectionBound in
// sim/failuredetection_test.go): a first suspicion within 2(n-1) probe
// periods, the longest suspicion timeout (SuspicionMaxMult x
// SuspicionTimeout for n <= 10), and 3*ceil(log2 n) periods for the news to
// spread; plus 5 s of slack for processes built with -race on a busy
// machine.
func deadBound(n int) time.Duration {
	cfg := membership.DefaultConfig()
	T := cfg.ProbeInterval
	first := time.Duration(2*(n-1)) * T
	longest := time.Duration(float64(cfg.SuspicionTimeout)*max(1, math.Log10(float64(n)))) * time.Duration(cfg.SuspicionMaxMult)
	spread := time.Duration(3*math.Ceil(math.Log2(float64(n)))) * T
	return first + longest + spread + 5*time.Second
}

// sse is one Server-Sent Event: its name and data.
type sse struct{ event, data string }

// watchMembers reads /v1/members?watch=1 into a channel of events.
func watchMembers(t *testing.T, a *agent) <-chan sse {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+a.http+"/v1/members?watch=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("watch members: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan sse, 256)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.event != "":
				ch <- ev
				ev = sse{}
			}
		}
	}()
	return ch
}

// TestFiveAgentsCrashDetectedAndRepaired: five real agents; one is
// SIGKILLed; the other four list it dead within the derived bound (and
// stream the suspicion and the death over /v1/members?watch=1); writes go
// on; restarted from its data directory, it is alive again everywhere at a
// higher incarnation, and holds every write made while it was down.
func TestFiveAgentsCrashDetectedAndRepaired(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const n = 5
	seed := newAgent(t, "n1")
	seed.start()
	all := []*agent{seed}
	for i := 2; i <= n; i++ {
		a := newAgent(t, fmt.Sprintf("n%d", i), seed.gossip)
		a.start()
		all = append(all, a)
	}
	allAlive := func(a *agent) bool {
		ms := a.members()
		if len(ms) != n {
			return false
		}
		for _, m := range ms {
			if m.State != "alive" {
				return false
			}
		}
		return true
	}
	for _, a := range all {
		a.waitFor(30*time.Second, "five alive members", func() bool { return allAlive(a) })
	}
	acked := map[string]string{}
	for i := range 10 {
		k, v := fmt.Sprintf("before/%02d", i), fmt.Sprintf("v%d", i)
		all[i%n].put(k, v)
		acked[k] = v
	}

	victim, others := all[n-1], all[:n-1]
	incBefore := seed.members()[victim.name].Incarnation
	events := watchMembers(t, seed)
	victim.kill()
	killed := time.Now()
	bound := deadBound(n)
	for _, a := range others {
		a.waitFor(bound-time.Since(killed), victim.name+" listed dead", func() bool { return a.members()[victim.name].State == "dead" })
	}
	t.Logf("%s listed dead by all %d others %v after SIGKILL (bound %v)", victim.name, n-1, time.Since(killed).Round(100*time.Millisecond), bound)

	// The seed streamed the suspicion and the death.
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for !seen["dead"] {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("member event stream ended; saw %v", seen)
			}
			if ev.event == "members" { // the view at the start
				continue
			}
			var me struct {
				Kind   string `json:"kind"`
				Member member `json:"member"`
			}
			if err := json.Unmarshal([]byte(ev.data), &me); err != nil {
				t.Fatalf("event %q: %v", ev.data, err)
			}
			if me.Member.Name == victim.name {
				seen[me.Kind] = true
				if ev.event != me.Kind {
					t.Fatalf("SSE event name %q for kind %q", ev.event, me.Kind)
				}
			}
		case <-timeout:
			t.Fatalf("no dead event for %s on the watch stream; saw %v", victim.name, seen)
		}
	}
	if !seen["suspect"] {
		t.Fatalf("dead without a suspect event first: %v", seen)
	}

	// Writes while it is down (and declared dead: no outbox keeps them).
	for i := range 10 {
		k, v := fmt.Sprintf("during/%02d", i), fmt.Sprintf("w%d", i)
		others[i%len(others)].put(k, v)
		acked[k] = v
	}

	victim.start()
	for _, a := range all {
		a.waitFor(30*time.Second, victim.name+" alive again", func() bool {
			m := a.members()[victim.name]
			return m.State == "alive" && m.Incarnation > incBefore
		})
	}
	// Its own list shows it alive throughout, whether or not it is ready.
	if m := victim.members()[victim.name]; m.State != "alive" {
		t.Fatalf("%s lists itself %q", victim.name, m.State)
	}
	// Declared dead, it lost its direct-mail outboxes: anti-entropy brings
	// it the writes it missed, before it reports itself ready.
	victim.waitFor(60*time.Second, "ready", func() bool {
		b, code, err := victim.request("GET", "/v1/status", nil)
		var st struct {
			Ready bool `json:"ready"`
		}
		return err == nil && code == 200 && json.Unmarshal(b, &st) == nil && st.Ready
	})
	for k, v := range acked {
		victim.waitFor(60*time.Second, "key "+k, func() bool { got, ok := victim.get(k); return ok && got == v })
	}
}
