package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hosts is a small network of test hosts: one network namespace per host,
// each with its own address on a bridge that lives in a namespace of its
// own, so that nothing in the machine's own network is touched. A
// blackhole route in a host cuts its link to another.
type hosts struct {
	t      *testing.T
	prefix string
	names  []string // namespace of host i
	addrs  []string // IPv4 address of host i
	key    string   // the cluster key file every agent gossips with
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newHosts makes n hosts. Where network namespaces are not available (not
// root, no iproute2) the test fails in CI (CI=true) and skips elsewhere,
// saying why on stderr (see requireRoot).
func newHosts(t *testing.T, n int) *hosts {
	t.Helper()
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
	requireRoot(t, "ip")
	// The agents gossip on non-loopback addresses: secure by default, they
	// need the cluster's key.
	h := &hosts{t: t, prefix: fmt.Sprintf("hs%d", os.Getpid()%100000), key: writeKey(t, 7)}
	sw := h.prefix + "sw"
	if err := ipCmd("netns", "add", sw); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot create network namespaces in CI: %v", err)
		}
		fmt.Fprintf(os.Stderr, "SKIP %s: cannot create network namespaces here: %v\n", t.Name(), err)
		t.Skipf("cannot create network namespaces here: %v", err)
	}
	t.Cleanup(func() {
		for _, ns := range append([]string{sw}, h.names...) {
			_ = ipCmd("netns", "del", ns)
		}
	})
	must := func(args ...string) {
		t.Helper()
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	must("-n", sw, "link", "add", "br0", "type", "bridge")
	must("-n", sw, "link", "set", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("%sh%d", h.prefix, i)
		addr := fmt.Sprintf("10.213.0.%d", i+1)
		host, port := fmt.Sprintf("%sv%d", h.prefix, i), fmt.Sprintf("%sp%d", h.prefix, i)
		must("netns", "add", ns)
		h.names, h.addrs = append(h.names, ns), append(h.addrs, addr)
		must("link", "add", host, "type", "veth", "peer", "name", port)
		must("link", "set", host, "netns", ns)
		must("link", "set", port, "netns", sw)
		must("-n", sw, "link", "set", port, "master", "br0")
		must("-n", sw, "link", "set", port, "up")
		must("-n", ns, "addr", "add", addr+"/24", "dev", host)
		must("-n", ns, "link", "set", host, "up")
		must("-n", ns, "link", "set", "lo", "up")
	}
	return h
}

// cut drops every packet between hosts i and j, both ways.
func (h *hosts) cut(i, j int) {
	h.t.Helper()
	for _, r := range [][2]int{{i, j}, {j, i}} {
		if err := ipCmd("-n", h.names[r[0]], "route", "add", "blackhole", h.addrs[r[1]]+"/32"); err != nil {
			h.t.Fatal(err)
		}
	}
}

// mend restores the link between hosts i and j.
func (h *hosts) mend(i, j int) {
	h.t.Helper()
	for _, r := range [][2]int{{i, j}, {j, i}} {
		if err := ipCmd("-n", h.names[r[0]], "route", "del", "blackhole", h.addrs[r[1]]+"/32"); err != nil {
			h.t.Fatal(err)
		}
	}
}

// nsAgent is a hearsay agent process running on one host, its HTTP API on
// the host's own loopback, reached with the CLI run on that host.
type nsAgent struct {
	t    *testing.T
	name string
	ns   string
	cmd  *exec.Cmd
	log  bytes.Buffer
	done chan struct{}
}

func (h *hosts) startAgent(i int, args ...string) *nsAgent {
	h.t.Helper()
	a := &nsAgent{t: h.t, name: fmt.Sprintf("h%d", i), ns: h.names[i], done: make(chan struct{})}
	full := append([]string{"netns", "exec", a.ns, binary, "agent", "--name", a.name,
		"--data-dir", h.t.TempDir(), "--bind", h.addrs[i] + ":7946", "--http", "127.0.0.1:7947", "--secret-key-file", h.key}, args...)
	a.cmd = exec.Command("ip", full...)
	a.cmd.Stdout, a.cmd.Stderr = &lockedWriter{w: &a.log}, &lockedWriter{w: &a.log}
	if err := a.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	h.t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.done
		if h.t.Failed() {
			h.t.Logf("--- log of %s ---\n%s", a.name, a.log.String())
		}
	})
	a.eventually(30*time.Second, "agent answering", func() bool { _, code := a.cli("status"); return code == 0 })
	return a
}

// cli runs the hearsay CLI on the agent's host and returns stdout and the
// exit code.
func (a *nsAgent) cli(args ...string) (string, int) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", a.ns, binary, "--addr", "127.0.0.1:7947", "--timeout", "3s"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return "", -1
	}
	return string(out), 0
}

func (a *nsAgent) value(key string) (string, bool) {
	out, code := a.cli("get", key)
	return out, code == 0
}

func (a *nsAgent) states() map[string]string {
	out, code := a.cli("members", "--json")
	if code != 0 {
		return nil
	}
	var ms []member
	if json.Unmarshal([]byte(out), &ms) != nil {
		return nil
	}
	st := map[string]string{}
	for _, m := range ms {
		st[m.Name] = m.State
	}
	return st
}

func (a *nsAgent) eventually(d time.Duration, what string, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: timed out after %v waiting for %s", a.name, d, what)
		}
		select {
		case <-a.done:
			a.t.Fatalf("%s exited while waiting for %s", a.name, what)
		case <-time.After(100 * time.Millisecond): // poll interval
		}
	}
}

// TestPartitionBetweenHosts runs three agents on three hosts of their own
// addresses, cuts one host off with blackhole routes while both sides take
// writes, and heals the cut: the failure detector sees the partition, and
// once it heals every host holds every write.
func TestPartitionBetweenHosts(t *testing.T) {
	h := newHosts(t, 3)
	tune := []string{"--suspicion-timeout", "2s", "--anti-entropy-interval", "1s"}
	a0 := h.startAgent(0, tune...)
	a1 := h.startAgent(1, append(tune, "--join", h.addrs[0]+":7946")...)
	a2 := h.startAgent(2, append(tune, "--join", h.addrs[0]+":7946")...)
	all := []*nsAgent{a0, a1, a2}
	for _, a := range all {
		a.eventually(30*time.Second, "three alive members", func() bool {
			st := a.states()
			return st["h0"] == "alive" && st["h1"] == "alive" && st["h2"] == "alive"
		})
	}
	if _, code := a0.cli("put", "before", "1"); code != 0 {
		t.Fatal("put before the partition failed")
	}
	a2.eventually(10*time.Second, "the first write", func() bool { v, ok := a2.value("before"); return ok && v == "1" })

	// Cut h0 off from h1 and h2; both sides keep taking writes.
	h.cut(0, 1)
	h.cut(0, 2)
	if _, code := a0.cli("put", "lonely", "h0"); code != 0 {
		t.Fatal("put on the cut-off host failed")
	}
	if _, code := a1.cli("put", "majority", "h1"); code != 0 {
		t.Fatal("put on the majority side failed")
	}
	a1.eventually(30*time.Second, "h0 declared dead across the cut", func() bool { return a1.states()["h0"] == "dead" })
	a2.eventually(10*time.Second, "the majority write on h2", func() bool { _, ok := a2.value("majority"); return ok })
	if _, ok := a0.value("majority"); ok {
		t.Fatal("a write crossed the partition")
	}
	if _, ok := a2.value("lonely"); ok {
		t.Fatal("a write crossed the partition")
	}

	h.mend(0, 1)
	h.mend(0, 2)
	for _, a := range all {
		a.eventually(60*time.Second, "every write and every member alive after the heal", func() bool {
			for k, want := range map[string]string{"before": "1", "lonely": "h0", "majority": "h1"} {
				if v, ok := a.value(k); !ok || v != want {
					return false
				}
			}
			st := a.states()
			return st["h0"] == "alive" && st["h1"] == "alive" && st["h2"] == "alive"
		})
	}
}
