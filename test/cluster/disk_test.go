package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/tmpfs"
)

// cpuSeconds returns the CPU time (user + system) process pid has used.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: utime is
	// the 14th field, stime the 15th, in clock ticks (100 per second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// TestDiskFull fills an agent's data directory, on a 64 MiB tmpfs, through
// its HTTP API with compressible and with incompressible values: first
// against the free-space watermark (--min-free-disk), then to a real ENOSPC
// (--min-free-disk off). Every write, the one in flight when the disk
// fills included, is answered within its 2 s deadline; the full disk gives
// 507, the agent stays up, serves reads, uses under 10% of a core and logs
// little, takes writes again by itself once space is freed, and loses
// nothing it acknowledged, even across a kill -9.
func TestDiskFull(t *testing.T) {
	for _, kind := range []string{"compressible", "incompressible"} {
		for _, minFree := range []string{"8MiB", "off"} {
			t.Run(kind+"/min-free-"+minFree, func(t *testing.T) { testDiskFull(t, kind, minFree) })
		}
	}
}

// writeDeadline is the bound: a write on a disk that fills is
// answered, 507 at the latest, within 2 s.
const writeDeadline = 2 * time.Second

func testDiskFull(t *testing.T, kind, minFree string) {
	vol := tmpfs.Mount(t, "64m")
	ballast := filepath.Join(vol, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 24<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, "full")
	// Without the race detector, which multiplies CPU time: the figure
	// measured is the shipped binary's.
	a.bin = extraBinary(t, "hearsay-norace")
	a.dir = filepath.Join(vol, "data")
	a.extra = []string{"--min-free-disk", minFree, "--log-level", "info"}
	a.start()

	value := func(i int) []byte {
		if kind == "compressible" {
			return bytes.Repeat([]byte(fmt.Sprintf("value %08d ", i)), 128<<10/15)
		}
		b := make([]byte, 128<<10)
		_, _ = rand.Read(b)
		return b
	}
	acked := map[string][]byte{}
	var full time.Time
	var refused []byte
	var slowest, firstRefusal time.Duration
	for i := 0; i < 4000 && full.IsZero(); i++ {
		key, v := fmt.Sprintf("k%05d", i), value(i)
		start := time.Now()
		body, code, err := a.requestWithin(writeDeadline, "PUT", "/v1/kv/"+key, v)
		d := time.Since(start)
		slowest = max(slowest, d)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("put %s (%d acknowledged before it): no answer within %v", key, len(acked), writeDeadline)
		case err != nil:
			t.Fatalf("put %s: %v", key, err)
		case code == 200:
			acked[key] = v
		case code == 507:
			full, refused, firstRefusal = time.Now(), body, d
		default:
			t.Fatalf("put %s: %d %s", key, code, body)
		}
	}
	if full.IsZero() {
		t.Fatal("the disk never filled up")
	}
	t.Logf("507 after %d acknowledged writes (%d MiB, slowest answer %v), first refusal in %v: %s", len(acked), len(acked)/8, slowest.Round(time.Millisecond), firstRefusal.Round(time.Millisecond), refused)
	// Refused at once from now on.
	for i := range 5 {
		body, code, err := a.requestWithin(writeDeadline, "PUT", fmt.Sprintf("/v1/kv/more%d", i), value(i))
		if err != nil || code != 507 {
			t.Fatalf("put on a full disk: %d %s %v", code, body, err)
		}
	}
	body, _, _ := a.request("GET", "/v1/status", nil)
	if !strings.Contains(string(body), `"ready":false`) || !strings.Contains(string(body), "disk") {
		t.Fatalf("status on a full disk: %s", body)
	}
	// Idle while full: under 10% of a core, few log lines, over 30 s from
	// the first refusal. (With compressible values, ten times more records
	// in the same space, 6-20% of a core was measured before the
	// tombstone sweep stopped reading every record: see
	// docs/PERFORMANCE.md.)
	pid := a.cmd.Process.Pid
	var shares []string
	var total float64
	const windows = 10
	for range windows {
		logLen := a.logLen()
		cpu0, t0 := cpuSeconds(t, pid), time.Now()
		<-time.After(3 * time.Second) // a window to measure over, not an event
		share := (cpuSeconds(t, pid) - cpu0) / time.Since(t0).Seconds()
		total += share
		shares = append(shares, fmt.Sprintf("%.1f%%", share*100))
		if lines := strings.Count(a.logSince(logLen), "\n"); lines > 15 {
			t.Errorf("a full agent logged %d lines in 3 s:\n%s", lines, a.logSince(logLen))
		}
	}
	mean := total / windows
	t.Logf("while full: CPU per 3 s window %v of a core, mean %.1f%%", shares, mean*100)
	if mean > 0.10 {
		t.Errorf("a full agent used %.1f%% of a core, limit 10%%", mean*100)
	}
	for k, v := range acked {
		if got, ok := a.get(k); !ok || got != string(v) {
			t.Fatalf("read %s on a full disk: ok=%v", k, ok)
		}
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	a.waitFor(15*time.Second, "writes taken again", func() bool {
		_, code, _ := a.request("PUT", "/v1/kv/after", []byte("space"))
		return code == 200
	})
	t.Logf("writes resumed %v after space was freed", time.Since(freed).Round(10*time.Millisecond))
	acked["after"] = []byte("space")
	a.waitFor(5*time.Second, "ready", func() bool {
		b, _, _ := a.request("GET", "/v1/status", nil)
		return strings.Contains(string(b), `"ready":true`)
	})
	check := func(when string) {
		for k, v := range acked {
			if got, ok := a.get(k); !ok || got != string(v) {
				t.Fatalf("acknowledged %s lost %s", k, when)
			}
		}
	}
	check("after space was freed")
	a.kill()
	a.start()
	check("after kill -9 and restart")
}

// logLen and logSince read the agent's log from an offset.
func (a *agent) logLen() int {
	logMu <- struct{}{}
	defer func() { <-logMu }()
	return a.log.Len()
}

func (a *agent) logSince(off int) string {
	logMu <- struct{}{}
	defer func() { <-logMu }()
	return string(a.log.Bytes()[off:])
}

var (
	buildMu sync.Mutex
	builds  = map[string]string{}
)

// extraBinary builds, once per set of flags, the hearsay CLI with those
// go build flags, next to the race-enabled binary of TestMain.
func extraBinary(t *testing.T, name string, flags ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds[name]; ok {
		return p
	}
	path := filepath.Join(filepath.Dir(binary), name)
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", append(append([]string{"build"}, flags...), "-o", path, "./cmd/hearsay")...)
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v: %s", flags, err, out)
	}
	builds[name] = path
	return path
}

// TestSlowSyncNoFalseSuspicion runs three agents, one of whose store syncs
// take 200 ms more than the disk's, under a steady stream of writes to that
// one. Its peers must never suspect it: its probe acks do not wait for its
// syncs. The slow one, whose --slow-sync is 100 ms, reports its slow disk
// (status slow_sync and a not-ready reason, one warning) and still takes
// writes; its peers report nothing.
func TestSlowSyncNoFalseSuspicion(t *testing.T) {
	bin := faultAgentBinary(t)
	slow := newAgent(t, "slow")
	slow.bin, slow.env = bin, []string{"HEARSAY_FAULT_SYNC_DELAY=200ms"}
	slow.extra = []string{"--slow-sync", "100ms"}
	slow.start()
	b := newAgent(t, "b", slow.gossip)
	b.start()
	c := newAgent(t, "c", slow.gossip)
	c.start()
	for _, x := range []*agent{slow, b, c} {
		x.waitFor(20*time.Second, "three alive members", func() bool {
			ms := x.members()
			n := 0
			for _, m := range ms {
				if m.State == "alive" {
					n++
				}
			}
			return n == 3
		})
	}
	const run = 30 * time.Second
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	stop := time.Now().Add(run)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				start := time.Now()
				_, code, err := slow.request("PUT", fmt.Sprintf("/v1/kv/w%d-%d", w, i), []byte("v"))
				if err == nil && code == 200 {
					mu.Lock()
					lat = append(lat, time.Since(start))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		t.Fatal("no write succeeded on the slow agent")
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	t.Logf("%d writes in %v on the slow agent, mean latency %v", len(lat), run, (sum / time.Duration(len(lat))).Round(time.Millisecond))
	for _, x := range []*agent{b, c} {
		logMu <- struct{}{}
		log := x.log.String()
		<-logMu
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "member=slow") && (strings.Contains(line, "to=suspect") || strings.Contains(line, "declared dead")) {
				t.Errorf("%s suspected the slow agent: %s", x.name, line)
			}
		}
		if m := x.members()["slow"]; m.State != "alive" {
			t.Errorf("%s sees slow as %q", x.name, m.State)
		}
		if st, ok := x.status(); !ok || st.SlowSync {
			t.Errorf("%s, whose disk is fast, reports slow syncs: %+v", x.name, st)
		}
	}
	st, ok := slow.status()
	if !ok || !st.SlowSync || st.Ready || !strings.Contains(strings.Join(st.NotReady, "; "), "disk: slow syncs") ||
		st.SyncSeconds == nil || st.SyncSeconds.P99 < 0.18 {
		t.Errorf("the slow agent's status does not report its slow disk: %+v", st)
	} else {
		t.Logf("slow agent: sync p99 %.3f s, max %.3f s over %d syncs in the last minute; not ready: %q", st.SyncSeconds.P99, st.SyncSeconds.Max, st.SyncSeconds.Count, st.NotReady)
	}
	if n := strings.Count(slow.logSince(0), "slow disk: syncs are slower"); n != 1 {
		t.Errorf("the slow agent logged its slow disk %d times in %v, want once (at most once a minute)", n, run)
	}
}

// TestFailedSyncNeverAcknowledged runs two agents, one of them a
// faultinject build whose store syncs fail with EIO while a file exists: a
// disk whose fsync fails. The write whose sync failed is answered 503,
// never 200; the node then refuses every write, even once its syncs would
// succeed again (fail-stop), says why it is not ready, keeps serving reads
// and membership, and does not acknowledge its peer's records, which stay
// in the peer's outbox. Restarted, it has every write it acknowledged,
// takes writes again and receives what its peer kept for it.
func TestFailedSyncNeverAcknowledged(t *testing.T) {
	failFile := filepath.Join(t.TempDir(), "fail-syncs")
	bad := newAgent(t, "bad")
	bad.bin, bad.env = faultAgentBinary(t), []string{"HEARSAY_FAULT_SYNC_FAIL=" + failFile}
	bad.start()
	peer := newAgent(t, "peer", bad.gossip)
	peer.start()
	for _, x := range []*agent{bad, peer} {
		x.waitFor(20*time.Second, "ready", func() bool { st, ok := x.status(); return ok && st.Ready })
	}
	bad.put("durable", "1")

	if err := os.WriteFile(failFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	body, code, err := bad.request("PUT", "/v1/kv/unsynced", []byte("2"))
	if err != nil || code != 503 {
		t.Fatalf("put whose sync failed: %d %s %v, want 503", code, body, err)
	}
	t.Logf("put whose sync failed: %d %s", code, body)
	if err := os.Remove(failFile); err != nil { // the disk seems fine again
		t.Fatal(err)
	}
	body, code, err = bad.requestWithin(writeDeadline, "PUT", "/v1/kv/later", []byte("3"))
	if err != nil || code != 503 || !strings.Contains(string(body), "storage failed") {
		t.Fatalf("put after a failed sync: %d %s %v, want 503 storage failed", code, body, err)
	}
	st, ok := bad.status()
	if !ok || st.Ready || !strings.Contains(strings.Join(st.NotReady, "; "), "storage failed") {
		t.Fatalf("status after a failed sync: %+v", st)
	}
	if v, ok := bad.get("durable"); !ok || v != "1" {
		t.Fatalf("read after a failed sync: %q %v", v, ok)
	}
	peer.put("from-peer", "4")
	peer.waitFor(10*time.Second, "the record for bad left in peer's outbox", func() bool {
		st, ok := peer.status()
		return ok && st.Outbox > 0
	})
	if _, ok := bad.get("from-peer"); ok {
		t.Fatal("a node whose sync failed applied a peer's record")
	}
	if m := peer.members()["bad"]; m.State != "alive" {
		t.Fatalf("peer sees the failed node as %q: its membership must go on", m.State)
	}

	bad.kill()
	bad.start()
	if v, ok := bad.get("durable"); !ok || v != "1" {
		t.Fatalf("acknowledged write after restart: %q %v", v, ok)
	}
	bad.waitFor(20*time.Second, "ready after the restart", func() bool { st, ok := bad.status(); return ok && st.Ready })
	bad.put("after-restart", "5")
	bad.waitFor(20*time.Second, "the peer's record delivered after the restart", func() bool {
		v, ok := bad.get("from-peer")
		return ok && v == "4"
	})
}
