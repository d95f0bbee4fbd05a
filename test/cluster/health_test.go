package cluster_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// healBound is the target: after a restart of any node, every
// member sees every other alive and writes flow both ways within it.
const healBound = 10 * time.Second

// stop stops the agent with SIGTERM (a graceful leave) and waits for it to
// exit.
func (a *agent) stop() {
	a.t.Helper()
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		a.t.Fatalf("%s: SIGTERM: %v", a.name, err)
	}
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		a.t.Fatalf("%s did not exit within 30s of SIGTERM", a.name)
	}
	a.cmd = nil
}

// agentStatus is the part of /v1/status these tests read.
type agentStatus struct {
	Ready         bool     `json:"ready"`
	NotReady      []string `json:"not_ready"`
	Serving       bool     `json:"serving"`
	Joined        bool     `json:"joined"`
	LastJoinError string   `json:"last_join_error"`
	Outbox        int      `json:"outbox"`
	SlowSync      bool     `json:"slow_sync"`
	SyncSeconds   *struct {
		Count uint64  `json:"count"`
		Max   float64 `json:"max"`
		P99   float64 `json:"p99"`
	} `json:"sync_seconds"`
}

func (a *agent) status() (agentStatus, bool) {
	var st agentStatus
	b, code, err := a.request("GET", "/v1/status", nil)
	return st, err == nil && code == 200 && json.Unmarshal(b, &st) == nil
}

// ready returns the answer of /v1/health/ready: its code and reasons.
func (a *agent) ready() (int, []string) {
	b, code, err := a.request("GET", "/v1/health/ready", nil)
	if err != nil {
		return 0, nil
	}
	var r struct {
		Ready   bool     `json:"ready"`
		Reasons []string `json:"reasons"`
	}
	_ = json.Unmarshal(b, &r)
	return code, r.Reasons
}

// healthCLI runs `hearsay health [args] --addr` against the agent and
// returns its exit code and output.
func (a *agent) healthCLI(args ...string) (int, string) {
	a.t.Helper()
	cmd := exec.Command(binary, append(append([]string{"health"}, args...), "--addr", a.http, "--timeout", "5s")...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	a.t.Fatalf("hearsay health: %v", err)
	return -1, ""
}

// logLines returns the lines of the agent's log (all its runs) that
// contain every one of words, case-insensitively.
func (a *agent) logLines(words ...string) []string {
	logMu <- struct{}{}
	text := a.log.String()
	<-logMu
	var out []string
	for _, line := range strings.Split(text, "\n") {
		l := strings.ToLower(line)
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, strings.ToLower(w))
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// allAlive reports whether a lists exactly the named members, all alive.
func allAlive(a *agent, names ...string) bool {
	ms := a.members()
	if len(ms) != len(names) {
		return false
	}
	for _, n := range names {
		if ms[n].State != "alive" {
			return false
		}
	}
	return true
}

// tryPut writes key=value on a, reporting success.
func (a *agent) tryPut(key, value string) bool {
	_, code, err := a.request("PUT", "/v1/kv/"+key, []byte(value))
	return err == nil && code == 200
}

// waitHealed waits, until deadline, for every agent to list all of them
// alive and for a write on x to be read on y and one on y to be read on x.
// Writes are retried (each with a new value) while the restarted node is
// not serving yet.
func waitHealed(t *testing.T, deadline time.Time, tag string, all []*agent, x, y *agent) {
	t.Helper()
	var names []string
	for _, a := range all {
		names = append(names, a.name)
	}
	for _, a := range all {
		a.waitFor(time.Until(deadline), "all of "+strings.Join(names, ", ")+" alive ("+tag+")", func() bool { return allAlive(a, names...) })
	}
	for _, pair := range [][2]*agent{{x, y}, {y, x}} {
		from, to := pair[0], pair[1]
		key := fmt.Sprintf("%s/%s-to-%s", tag, from.name, to.name)
		attempt := 0
		from.waitFor(time.Until(deadline), "a write to "+key+" accepted", func() bool {
			attempt++
			return from.tryPut(key, fmt.Sprint(attempt))
		})
		want := fmt.Sprint(attempt)
		to.waitFor(time.Until(deadline), "key "+key+" from "+from.name, func() bool {
			got, ok := to.get(key)
			return ok && got == want
		})
	}
}

// TestRestartOnlySeedHeals: three agents, a2 and a3 joined through a1, the
// only seed. a1 is stopped gracefully (SIGTERM: it leaves) or killed
// (SIGKILL), and restarted from its data directory with no --join, or with
// --join a2. Within 10 s of the restart every agent lists all three alive
// and writes flow both ways between a1 and a2. A joiner, a2, is also
// restarted gracefully with its --join a1. Each case runs on a cluster of
// its own, so that one failure does not hide the others.
func TestRestartOnlySeedHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	type restart struct {
		name     string
		victim   string // a1 or a2
		graceful bool
		join     string // "", or the agent to join on restart
	}
	var cases []restart
	for _, graceful := range []bool{true, false} {
		for _, join := range []string{"", "a2"} {
			how := "sigterm"
			if !graceful {
				how = "sigkill"
			}
			with := "no-join"
			if join != "" {
				with = "join-" + join
			}
			cases = append(cases, restart{fmt.Sprintf("a1-%s-%s", how, with), "a1", graceful, join})
		}
	}
	cases = append(cases, restart{"a2-sigterm-join-a1", "a2", true, "a1"})

	var report []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a1 := newAgent(t, "a1")
			a1.start()
			a2 := newAgent(t, "a2", a1.gossip)
			a2.start()
			a3 := newAgent(t, "a3", a1.gossip)
			a3.start()
			all := []*agent{a1, a2, a3}
			byName := map[string]*agent{"a1": a1, "a2": a2, "a3": a3}
			for _, a := range all {
				a.waitFor(30*time.Second, "three alive members", func() bool { return allAlive(a, "a1", "a2", "a3") })
			}
			victim, peer := byName[c.victim], a2
			if victim == a2 {
				peer = a1
			}
			if c.graceful {
				victim.stop()
			} else {
				victim.kill()
			}
			victim.join = nil
			if c.join != "" {
				victim.join = []string{byName[c.join].gossip}
			}
			restarted := time.Now()
			victim.start()
			waitHealed(t, restarted.Add(healBound), c.name, all, victim, peer)
			healed := time.Since(restarted).Round(10 * time.Millisecond)
			report = append(report, fmt.Sprintf("%s %v", c.name, healed))
			t.Logf("%s: healed %v after the restart (bound %v)", c.name, healed, healBound)
		})
	}
	t.Logf("heal times: %s", strings.Join(report, ", "))
}

// writeKey writes a cluster key (base64 of 32 bytes made of b) and returns
// its file name.
func writeKey(t *testing.T, b byte) string {
	t.Helper()
	k := make([]byte, 32)
	for i := range k {
		k[i] = b
	}
	p := filepath.Join(t.TempDir(), fmt.Sprintf("key-%d", b))
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkNotJoined waits for a to report a failed join whose error, health
// answer, CLI exit code and log all name the cause (every word of cause).
func checkNotJoined(t *testing.T, a *agent, cause ...string) {
	t.Helper()
	var st agentStatus
	a.waitFor(10*time.Second, fmt.Sprintf("a join error naming %q", cause), func() bool {
		var ok bool
		st, ok = a.status()
		if !ok || st.LastJoinError == "" {
			return false
		}
		for _, w := range cause {
			if !strings.Contains(strings.ToLower(st.LastJoinError), w) {
				return false
			}
		}
		return true
	})
	t.Logf("%s: last_join_error %q", a.name, st.LastJoinError)
	if st.Joined || st.Ready {
		t.Errorf("%s: status %+v, want not joined and not ready", a.name, st)
	}
	code, reasons := a.ready()
	if code != 503 || len(reasons) == 0 || !strings.Contains(strings.Join(reasons, "; "), st.LastJoinError) {
		t.Errorf("%s: /v1/health/ready %d %q, want 503 with the join error", a.name, code, reasons)
	}
	if code, out := a.healthCLI("--ready"); code != 1 || !strings.Contains(out, "not joined") {
		t.Errorf("%s: hearsay health --ready exit %d, output %q; want 1 and the reason", a.name, code, out)
	}
	if code, _ := a.healthCLI(); code != 0 {
		t.Errorf("%s: hearsay health (liveness) exit %d, want 0", a.name, code)
	}
	a.waitFor(5*time.Second, "a log line of the failed join", func() bool {
		return len(a.logLines(append([]string{"join failed"}, cause...)...)) > 0
	})
	t.Logf("%s log: %s", a.name, a.logLines(append([]string{"join failed"}, cause...)...)[0])
}

// waitReady waits for a's /v1/health/ready to answer 200 and `hearsay
// health --ready` to exit 0.
func waitReady(t *testing.T, a *agent, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, reasons := a.ready()
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			st, _ := a.status()
			t.Fatalf("%s: not ready within %v: /v1/health/ready %d %q; status %+v", a.name, d, code, reasons, st)
		}
		select {
		case <-a.exited:
			t.Fatalf("%s exited while waiting to be ready", a.name)
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
	if code, out := a.healthCLI("--ready"); code != 0 {
		t.Errorf("%s: hearsay health --ready exit %d: %s", a.name, code, out)
	}
}

// TestJoinFailuresReported: a join to an address where nothing listens,
// to a seed with another key, and without a key to a seed with one, is
// reported in /v1/status (joined false, last_join_error), in
// /v1/health/ready (503 with the reason), by `hearsay health --ready` (exit
// 1) and in the log. Each agent turns ready once a correct join succeeds.
func TestJoinFailuresReported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Run("no answer", func(t *testing.T) {
		seed := newAgent(t, "s1") // not started yet: nothing listens there
		j := newAgent(t, "j1", seed.gossip)
		j.extra = []string{"--retry-join-max", "1s"}
		j.start()
		checkNotJoined(t, j, "no answer")
		// The seed comes up: the retries reach it.
		seed.start()
		waitReady(t, j, 10*time.Second)
		waitReady(t, seed, 10*time.Second)
	})

	keyA, keyB := writeKey(t, 1), writeKey(t, 2)
	for _, tc := range []struct {
		name      string
		joinerKey []string
	}{
		{"other key", []string{"--secret-key-file", keyB}},
		{"no key", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := newAgent(t, "s1")
			seed.extra = []string{"--secret-key-file", keyA}
			seed.start()
			j := newAgent(t, "j1", seed.gossip)
			j.extra = append([]string{"--retry-join-max", "1s"}, tc.joinerKey...)
			j.start()
			checkNotJoined(t, j, "refused", "key")
			if ms := seed.members(); len(ms) != 1 {
				t.Errorf("seed lists %v", ms)
			}
			// Restarted with the seed's key, it joins.
			j.kill()
			j.extra = []string{"--retry-join-max", "1s", "--secret-key-file", keyA}
			j.start()
			waitReady(t, j, 10*time.Second)
			if st, _ := j.status(); !st.Joined || st.LastJoinError != "" {
				t.Errorf("after joining: status %+v", st)
			}
			j.waitFor(5*time.Second, "a log line of the join", func() bool { return len(j.logLines("joined the cluster")) > 0 })
		})
	}
}

// TestIncompatibleMaxValueSizeRefused: a seed with --max-value-size 1024
// refuses a joiner with the default; both logs and the joiner's
// last_join_error name the setting, the joiner is not ready, and the seed
// does not list it.
func TestIncompatibleMaxValueSizeRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	seed := newAgent(t, "s1")
	seed.extra = []string{"--max-value-size", "1024"}
	seed.start()
	j := newAgent(t, "j1", seed.gossip)
	j.extra = []string{"--retry-join-max", "1s"}
	j.start()

	names := func(s string) bool {
		s = strings.ToLower(s)
		return strings.Contains(s, "max-value-size") || strings.Contains(s, "max_value_size")
	}
	var st agentStatus
	j.waitFor(10*time.Second, "a join error naming max-value-size", func() bool {
		st, _ = j.status()
		return names(st.LastJoinError)
	})
	t.Logf("joiner last_join_error: %q", st.LastJoinError)
	if st.Joined || st.Ready {
		t.Errorf("joiner status %+v, want not joined and not ready", st)
	}
	if code, _ := j.ready(); code != 503 {
		t.Errorf("joiner /v1/health/ready %d, want 503", code)
	}
	for _, a := range []*agent{j, seed} {
		a.waitFor(5*time.Second, "a log line naming max-value-size", func() bool {
			for _, l := range a.logLines() {
				if names(l) && (strings.Contains(l, "WARN") || strings.Contains(l, "ERROR")) {
					t.Logf("%s log: %s", a.name, l)
					return true
				}
			}
			return false
		})
	}
	if _, ok := seed.members()["j1"]; ok {
		t.Errorf("seed lists the refused joiner: %v", seed.members())
	}
}
