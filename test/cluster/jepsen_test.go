package cluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The Jepsen-style suite: five agents on five hosts (network namespaces on
// a bridge), clients writing through each host's agent while a nemesis
// drops packets with nftables, partitions the hosts with blackhole routes,
// kills agents with SIGKILL and restarts them gracefully. The generator
// (the clients), the nemesis and the checker are apart: the checker reads
// only the history of client operations with their outcomes and the
// replicas' final states.
//
// HEARSAY_SOAK=1 runs the long variant (make soak).

// requireRoot fails the test in CI (CI=true), where the suite must run,
// and skips it elsewhere, with the reason printed either way.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "network namespaces need root"
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); why == "" && err != nil {
			why = fmt.Sprintf("%s is not installed (apt-get install -y iproute2 nftables)", tool)
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s cannot run in CI: %s", t.Name(), why)
	}
	fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", t.Name(), why)
	t.Skip(why)
}

// setLoss makes host i drop P% of the packets it receives from other hosts
// (nftables, numgen random in the input chain); 0 removes the rule.
func (h *hosts) setLoss(i, percent int) {
	h.t.Helper()
	_ = exec.Command("ip", "netns", "exec", h.names[i], "nft", "delete", "table", "inet", "hsloss").Run()
	if percent == 0 {
		return
	}
	rules := fmt.Sprintf(`table inet hsloss {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname != "lo" numgen random mod 100 < %d drop
	}
}
`, percent)
	cmd := exec.Command("ip", "netns", "exec", h.names[i], "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("nft on %s: %v: %s", h.names[i], err, out)
	}
}

// dialIn returns a dialer that opens its sockets in network namespace ns:
// how the test process, in the machine's namespace, reaches an agent's
// HTTP API on the loopback of its host.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// The thread enters the namespace and is never given back to
			// the scheduler: it exits with this goroutine.
			runtime.LockOSThread()
			f, err := os.Open("/var/run/netns/" + ns)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// jAgent is an agent on one host with a data directory that outlives its
// restarts.
type jAgent struct {
	t      *testing.T
	h      *hosts
	i      int
	name   string
	dir    string
	args   []string
	http   *http.Client
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	log    bytes.Buffer
	starts int
}

func (a *jAgent) start() {
	a.t.Helper()
	full := append([]string{"netns", "exec", a.h.names[a.i], binary, "agent", "--name", a.name,
		"--data-dir", a.dir, "--bind", a.h.addrs[a.i] + ":7946", "--http", "127.0.0.1:7947"}, a.args...)
	cmd := exec.Command("ip", full...)
	fmt.Fprintf(&lockedWriter{w: &a.log}, "=== start %d\n", a.starts)
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: &a.log}, &lockedWriter{w: &a.log}
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.starts++
	a.mu.Unlock()
}

// stop sends sig and waits for the process to exit.
func (a *jAgent) stop(sig syscall.Signal) {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func (a *jAgent) do(method, path string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequest(method, "http://127.0.0.1:7947"+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func (a *jAgent) ready() bool {
	_, code, err := a.do("GET", "/v1/health/ready", nil)
	return err == nil && code == 200
}

// scan returns every live key with its value and version.
func (a *jAgent) scan() (map[string]jEntry, error) {
	out := map[string]jEntry{}
	cursor := "" // "next" of the previous page, base64
	for {
		b, code, err := a.do("GET", "/v1/kv?limit=1000&cursor="+url.QueryEscape(cursor), nil)
		if err != nil || code != 200 {
			return nil, fmt.Errorf("%s: scan: %d %s %v", a.name, code, b, err)
		}
		var sr struct {
			Entries []struct{ Key, Value, Version string }
			Next    string
		}
		if err := json.Unmarshal(b, &sr); err != nil {
			return nil, fmt.Errorf("%s: scan: %w", a.name, err)
		}
		for _, e := range sr.Entries {
			key, err := base64.StdEncoding.DecodeString(e.Key) // keys are base64 in JSON
			if err != nil {
				return nil, fmt.Errorf("%s: scan: key %q: %w", a.name, e.Key, err)
			}
			out[string(key)] = jEntry{value: e.Value, version: parseVersion(e.Version)}
		}
		if sr.Next == "" {
			return out, nil
		}
		cursor = sr.Next
	}
}

type jEntry struct {
	value   string // base64, as the API gives it
	version version
}

// version is a record's version as the API prints it, HLC@node in hex.
type version struct{ hlc, node uint64 }

func parseVersion(s string) version {
	h, n, _ := strings.Cut(s, "@")
	a, _ := strconv.ParseUint(h, 16, 64)
	b, _ := strconv.ParseUint(n, 16, 64)
	return version{a, b}
}

func (v version) less(o version) bool {
	return v.hlc < o.hlc || (v.hlc == o.hlc && v.node < o.node)
}

func (v version) String() string { return fmt.Sprintf("%x@%x", v.hlc, v.node) }

// jOp is one client operation and its outcome: ok (acknowledged), fail
// (refused: it did not happen) or info (no answer: it may have).
type jOp struct {
	client     int
	key, value string
	del        bool
	start, end time.Duration
	outcome    string
	version    version
	err        string
}

func (o jOp) String() string {
	what := "put " + o.key + "=" + o.value
	if o.del {
		what = "del " + o.key
	}
	return fmt.Sprintf("c%d %v..%v %s -> %s %v %s", o.client, o.start.Round(time.Millisecond), o.end.Round(time.Millisecond), what, o.outcome, o.version, o.err)
}

// history is the record of the clients' operations.
type history struct {
	mu  sync.Mutex
	ops []jOp
	t0  time.Time
}

func (h *history) add(o jOp) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

// client writes through one agent until stop: unique keys (the set test)
// and overwrites of a few shared keys (the LWW register test), with
// deletes of both.
func client(id int, a *jAgent, h *history, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	var mine []string                             // set keys this client wrote and saw acknowledged
	tick := time.NewTicker(40 * time.Millisecond) // pacing: 25 ops/s per client
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		op := jOp{client: id}
		switch p := rng.IntN(100); {
		case p < 45:
			op.key, op.value = fmt.Sprintf("set-%d-%d", id, n), fmt.Sprintf("c%d-%d", id, n)
		case p < 60 && len(mine) > 0:
			j := rng.IntN(len(mine))
			op.key, op.del = mine[j], true
			mine = slices.Delete(mine, j, j+1)
		case p < 90:
			op.key, op.value = fmt.Sprintf("reg-%d", rng.IntN(5)), fmt.Sprintf("c%d-%d", id, n)
		default:
			op.key, op.del = fmt.Sprintf("reg-%d", rng.IntN(5)), true
		}
		method, body := "PUT", []byte(op.value)
		if op.del {
			method, body = "DELETE", nil
		}
		op.start = time.Since(h.t0)
		b, code, err := a.do(method, "/v1/kv/"+op.key, body)
		op.end = time.Since(h.t0)
		switch {
		case err == nil && code == 200:
			var kv struct{ Version string }
			_ = json.Unmarshal(b, &kv)
			op.outcome, op.version = "ok", parseVersion(kv.Version)
			if !op.del && strings.HasPrefix(op.key, "set-") {
				mine = append(mine, op.key)
			}
		case err == nil:
			op.outcome, op.err = "fail", fmt.Sprintf("%d %s", code, bytes.TrimSpace(b))
		case isRefused(err):
			op.outcome, op.err = "fail", err.Error() // never reached the agent
		default:
			op.outcome, op.err = "info", err.Error()
		}
		h.add(op)
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// jepsenCheck reads the history and the final replicas: acknowledged
// writes lost, deleted keys resurrected, replicas that disagree.
func jepsenCheck(ops []jOp, final []map[string]jEntry, names []string) (lost, resurrected, disagree []string) {
	byKey := map[string][]jOp{}
	for _, o := range ops {
		if o.outcome != "fail" {
			byKey[o.key] = append(byKey[o.key], o)
		}
	}
	keys := map[string]bool{}
	for k := range byKey {
		keys[k] = true
	}
	for _, f := range final {
		for k := range f {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		ref, refOK := final[0][k]
		for i, f := range final[1:] {
			e, ok := f[k]
			if ok != refOK || e != ref {
				disagree = append(disagree, fmt.Sprintf("%s: %s holds %v, %s holds %v", k, names[i+1], e, names[0], ref))
			}
		}
		for _, f := range final[:1] {
			e, present := f[k]
			for _, o := range byKey[k] {
				if o.outcome != "ok" {
					continue
				}
				if !o.del {
					// Lost: the final state is older than the acknowledged
					// write, or the key is gone with no delete that could
					// have come after it.
					if present && e.version.less(o.version) {
						lost = append(lost, fmt.Sprintf("%s: acknowledged %s, final %v", k, o, e.version))
					}
					if !present && !deletedAfter(byKey[k], o.version) {
						lost = append(lost, fmt.Sprintf("%s: acknowledged %s, final: absent, and no delete after it", k, o))
					}
				} else if present && e.version.less(o.version) {
					resurrected = append(resurrected, fmt.Sprintf("%s: acknowledged %s, final value %v is older", k, o, e.version))
				}
			}
		}
	}
	return lost, resurrected, disagree
}

// deletedAfter reports whether a delete that may have happened (ok with a
// newer version, or info of unknown version) can explain a key's absence.
func deletedAfter(ops []jOp, v version) bool {
	for _, o := range ops {
		if o.del && (o.outcome == "info" || (o.outcome == "ok" && v.less(o.version))) {
			return true
		}
	}
	return false
}

// TestJepsen runs the suite: clients on five hosts under packet loss,
// partitions (majority/minority, an isolated node, a bridge), SIGKILL and
// restart, graceful restart; then the faults heal and the checker wants 0
// acknowledged writes lost, 0 deleted keys resurrected and every replica
// identical, and reports how long they took to converge.
func TestJepsen(t *testing.T) {
	requireRoot(t, "ip", "nft")
	if testing.Short() {
		t.Skip("runs five agents for about a minute")
	}
	soak := os.Getenv("HEARSAY_SOAK") == "1"
	h := newHosts(t, 5)
	keyFile := filepath.Join(t.TempDir(), "key")
	key, err := exec.Command(binary, "keys", "generate").Output()
	if err != nil {
		t.Fatalf("hearsay keys generate: %v", err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	agents := make([]*jAgent, 5)
	for i := range agents {
		args := []string{"--secret-key-file", keyFile, "--suspicion-timeout", "2s", "--anti-entropy-interval", "1s", "--log-level", "info"}
		if i > 0 {
			args = append(args, "--join", h.addrs[0]+":7946")
		}
		a := &jAgent{t: t, h: h, i: i, name: fmt.Sprintf("h%d", i), dir: filepath.Join(t.TempDir(), "data"), args: args,
			http: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: dialIn(h.names[i])}}}
		agents[i] = a
		t.Cleanup(func() {
			a.stop(syscall.SIGKILL)
			if t.Failed() {
				t.Logf("--- log of %s (last 8 KB) ---\n%s", a.name, tail(a.log.String(), 8<<10))
			}
		})
		a.start()
	}
	t.Cleanup(func() {
		for i := range agents {
			h.setLoss(i, 0)
		}
	})
	waitAll := func(d time.Duration, what string, cond func(a *jAgent) bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for _, a := range agents {
			for !cond(a) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: timed out after %v waiting for %s", a.name, d, what)
				}
				<-time.After(100 * time.Millisecond) // poll interval, under a deadline
			}
		}
	}
	waitAll(60*time.Second, "every agent ready", (*jAgent).ready)

	hist := &history{t0: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go client(i, a, hist, stop, &wg)
	}
	var nemesis []string
	note := func(format string, args ...any) {
		nemesis = append(nemesis, fmt.Sprintf("%v ", time.Since(hist.t0).Round(time.Millisecond))+fmt.Sprintf(format, args...))
		t.Logf("nemesis: %s", nemesis[len(nemesis)-1])
	}
	// The nemesis's clock: each phase lasts a fixed time while the clients
	// write; a ticker would not make it shorter.
	phase := func(d time.Duration) {
		if soak {
			d *= 4
		}
		<-time.After(d)
	}
	cutGroups := func(g1, g2 []int) {
		for _, i := range g1 {
			for _, j := range g2 {
				h.cut(i, j)
			}
		}
	}
	mendGroups := func(g1, g2 []int) {
		for _, i := range g1 {
			for _, j := range g2 {
				h.mend(i, j)
			}
		}
	}
	rounds := 1
	if soak {
		rounds = 3
	}
	for range rounds {
		phase(3 * time.Second)
		note("20%% packet loss on every host")
		for i := range agents {
			h.setLoss(i, 20)
		}
		phase(10 * time.Second)
		for i := range agents {
			h.setLoss(i, 0)
		}
		note("loss healed; partition majority {h0 h1 h2} / minority {h3 h4}")
		cutGroups([]int{0, 1, 2}, []int{3, 4})
		phase(8 * time.Second)
		mendGroups([]int{0, 1, 2}, []int{3, 4})
		note("healed; isolate h2")
		cutGroups([]int{2}, []int{0, 1, 3, 4})
		phase(6 * time.Second)
		mendGroups([]int{2}, []int{0, 1, 3, 4})
		note("healed; bridge: {h0 h1} and {h3 h4} apart, h2 sees both")
		cutGroups([]int{0, 1}, []int{3, 4})
		phase(6 * time.Second)
		mendGroups([]int{0, 1}, []int{3, 4})
		note("healed; SIGKILL h1")
		agents[1].stop(syscall.SIGKILL)
		phase(3 * time.Second)
		note("restart h1")
		agents[1].start()
		phase(3 * time.Second)
		note("graceful restart of h3 (SIGTERM)")
		agents[3].stop(syscall.SIGTERM)
		agents[3].start()
		phase(3 * time.Second)
		note("SIGKILL h4 under 20%% loss on h0")
		h.setLoss(0, 20)
		agents[4].stop(syscall.SIGKILL)
		phase(2 * time.Second)
		agents[4].start()
		h.setLoss(0, 0)
		note("restarted h4, loss healed")
		phase(3 * time.Second)
	}
	close(stop)
	wg.Wait()
	healed := time.Now()
	note("clients stopped, every fault healed")

	// Convergence: every replica identical, read until they are.
	var final []map[string]jEntry
	names := make([]string, len(agents))
	for i, a := range agents {
		names[i] = a.name
	}
	converged := false
	deadline := healed.Add(90 * time.Second)
	for time.Now().Before(deadline) {
		final = final[:0]
		ok := true
		for _, a := range agents {
			f, err := a.scan()
			if err != nil {
				ok = false
				break
			}
			final = append(final, f)
		}
		if ok {
			if _, _, dis := jepsenCheck(nil, final, names); len(dis) == 0 {
				converged = true
				break
			}
		}
		<-time.After(200 * time.Millisecond) // poll interval, under a deadline
	}
	convergence := time.Since(healed)
	if len(final) != len(agents) {
		t.Fatalf("could not read every replica within 90 s of the heal")
	}
	count := map[string]int{}
	for _, o := range hist.ops {
		count[o.outcome]++
	}
	lost, resurrected, disagree := jepsenCheck(hist.ops, final, names)
	t.Logf("history: %d operations, %d ok, %d failed, %d indeterminate; %d keys in the final state", len(hist.ops), count["ok"], count["fail"], count["info"], len(final[0]))
	t.Logf("checker: %d acknowledged writes lost, %d deleted keys resurrected, %d keys on which replicas disagree; converged %v after the heal (%v)", len(lost), len(resurrected), len(disagree), convergence.Round(10*time.Millisecond), converged)
	for _, l := range lost {
		t.Errorf("lost: %s", l)
	}
	for _, r := range resurrected {
		t.Errorf("resurrected: %s", r)
	}
	for i, d := range disagree {
		if i == 20 {
			t.Errorf("... %d more", len(disagree)-i)
			break
		}
		t.Errorf("disagree after heal: %s", d)
	}
	if t.Failed() {
		t.Logf("nemesis:\n%s", strings.Join(nemesis, "\n"))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
