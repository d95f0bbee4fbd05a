package cluster_test

// Issue 11: secure by default, bounded resources. These tests play the
// attacker of the issue against real agent processes on loopback.

import (
	"bufio"
	"crypto/rand"
	be "encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// generateKey makes a cluster key with `hearsay keys generate --out`.
func generateKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gossip.key")
	if out, err := exec.Command(binary, "keys", "generate", "--out", path).CombinedOutput(); err != nil {
		t.Fatalf("keys generate: %v: %s", err, out)
	}
	return path
}

func TestExposedAgentRefusesToStartWithoutAuth(t *testing.T) {
	key := generateKey(t)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"agent", "--name", "x", "--in-memory"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("--bind", "0.0.0.0:0", "--http", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "--secret-key-file") || !strings.Contains(out, "--insecure") {
		t.Fatalf("gossip on 0.0.0.0 without a key: err %v, output:\n%s", err, out)
	}
	out, err = run("--bind", "127.0.0.1:0", "--advertise", "10.1.2.3:7946", "--http", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "--advertise") {
		t.Fatalf("advertised beyond loopback without a key: err %v, output:\n%s", err, out)
	}
	out, err = run("--bind", "0.0.0.0:0", "--http", "0.0.0.0:0", "--secret-key-file", key)
	if err == nil || !strings.Contains(out, "Serve HTTP on loopback, or pass --insecure") {
		t.Fatalf("HTTP on 0.0.0.0: err %v, output:\n%s", err, out)
	}
	// With --insecure it starts, and says loudly what is exposed.
	a := newAgent(t, "open")
	a.gossip = strings.Replace(a.gossip, "127.0.0.1", "0.0.0.0", 1)
	a.extra = []string{"--insecure"}
	a.start()
	a.waitFor(5*time.Second, "the INSECURE warning", func() bool {
		logMu <- struct{}{}
		defer func() { <-logMu }()
		return strings.Contains(a.log.String(), "INSECURE") && strings.Contains(a.log.String(), "without a key")
	})
}

// A stranger without the key (or with another) cannot join, write, delete
// or inject members, over UDP or TCP.
func TestStrangerWithoutKeyIsShutOut(t *testing.T) {
	key := generateKey(t)
	n1 := newAgent(t, "n1")
	n1.extra = []string{"--secret-key-file", key}
	n1.start()
	n2 := newAgent(t, "n2", n1.gossip)
	n2.extra = []string{"--secret-key-file", key}
	n2.start()
	n1.waitFor(20*time.Second, "n2 alive on n1", func() bool { return n1.members()["n2"].State == "alive" })
	n1.waitFor(10*time.Second, "a first write", func() bool {
		_, code, err := n1.request("PUT", "/v1/kv/keep", []byte("v1"))
		return err == nil && code == 200
	})
	n2.waitFor(10*time.Second, "keep on n2", func() bool { v, ok := n2.get("keep"); return ok && v == "v1" })

	stranger := newAgent(t, "stranger", n1.gossip)
	stranger.start()
	other := newAgent(t, "otherkey", n1.gossip)
	other.extra = []string{"--secret-key-file", generateKey(t)}
	other.start()
	for _, s := range []*agent{stranger, other} {
		s.waitFor(20*time.Second, "a join refusal", func() bool {
			b, _, err := s.request("GET", "/v1/status", nil)
			return err == nil && strings.Contains(string(b), "refused")
		})
		s.request("PUT", "/v1/kv/stranger-"+s.name, []byte("x")) // alone, it may not even be writable
	}

	// Raw frames as from a node that never joined: a write, a delete of
	// "keep", and a thousand invented members; plaintext, and sealed with a
	// key of nobody's.
	now := uint64(time.Now().UnixMilli()) << 16
	env := &wire.Envelope{
		Cluster: "hearsay", From: "mallory", FromAddr: "127.0.0.1:1", FromId: 666,
		Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{
			{Key: []byte("evil"), Value: []byte("x"), Hlc: now, Node: 666},
			{Key: []byte("keep"), Hlc: now, Node: 666, Tombstone: true},
		}}},
	}
	for i := range 1000 {
		name := fmt.Sprintf("fake-%d", i)
		env.Members = append(env.Members, &wire.Member{Name: name, Address: "127.0.0.1:1", Incarnation: 1, State: wire.State_ALIVE, NodeId: uint64(1000 + i)})
	}
	frame, err := wire.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	small := &wire.Envelope{Cluster: "hearsay", From: "mallory", FromAddr: "127.0.0.1:1", FromId: 666, Body: env.Body}
	small.Members = env.Members[:5]
	datagram, err := wire.Marshal(small)
	if err != nil {
		t.Fatal(err)
	}
	before := n1.metric(`hearsay_transport_rejected_frames_total{reason="auth"}`)
	u, err := net.Dial("udp", n1.gossip)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write(datagram)
	fake := sealedLike(datagram)
	u.Write(fake)
	c, err := net.Dial("tcp", n1.gossip)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(frame) // larger than the pre-authentication limit: cut at the header
	waitClosed(t, c)
	c, err = net.Dial("tcp", n1.gossip)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(datagram) // small, plaintext: refused, answered with a notice
	waitClosed(t, c)
	n1.waitFor(10*time.Second, "the injections refused", func() bool {
		return n1.metric(`hearsay_transport_rejected_frames_total{reason="auth"}`) >= before+3 &&
			n1.metric(`hearsay_transport_closed_connections_total{reason="pre_auth_frame"}`) >= 1
	})

	// A write on n1 now reaches n2, and nothing of the strangers did.
	n1.put("after", "1")
	n2.waitFor(10*time.Second, "after on n2", func() bool { _, ok := n2.get("after"); return ok })
	for _, a := range []*agent{n1, n2} {
		if v, ok := a.get("keep"); !ok || v != "v1" {
			t.Fatalf("%s: keep = %q, %v: deleted by a stranger", a.name, v, ok)
		}
		for _, k := range []string{"evil", "stranger-stranger", "stranger-otherkey"} {
			if _, ok := a.get(k); ok {
				t.Fatalf("%s holds %s, written by a stranger", a.name, k)
			}
		}
		ms := a.members()
		if len(ms) != 2 {
			t.Fatalf("%s sees %d members, want n1 and n2: %v", a.name, len(ms), ms)
		}
	}
}

// sealedLike returns frame sealed with a fresh random key: well formed,
// and opened by nobody.
func sealedLike(frame []byte) []byte {
	body := make([]byte, 1+12+len(frame)+16)
	body[0] = 1
	rand.Read(body[1:])
	out := []byte{'H', 'S', wire.ProtocolVersion, 1, 0, 0, 0, 0}
	be.BigEndian.PutUint32(out[4:], uint32(len(body)))
	return append(out, body...)
}

// waitClosed waits until the agent closes c.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection not closed by the agent")
		}
	}
}

// plainBinary is hearsay built without the race detector, whose shadow
// memory would swamp the resident sizes the bounds are about.
var plainBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "hearsay-plain")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hearsay")
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin, "./cmd/hearsay")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v: %s", err, out)
	}
	return bin, nil
})

// rssMiB returns the resident set size of a process, in MiB (VmRSS of
// /proc/PID/status), or 0 if it cannot be read.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// attacked is one agent with a key, built without the race detector, under
// attack: it records its idle RSS and the peak while sampling.
type attacked struct {
	*agent
	t       *testing.T
	pid     int
	idle    float64
	peak    atomic.Uint64 // KiB
	stop    chan struct{}
	sampled chan struct{}
}

func startAttacked(t *testing.T, extra ...string) *attacked {
	bin, err := plainBinary()
	if err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, "victim")
	a.bin = bin
	a.extra = append([]string{"--secret-key-file", generateKey(t), "--log-level", "info"}, extra...)
	a.start()
	a.put("warm", "up")
	v := &attacked{agent: a, t: t, pid: a.cmd.Process.Pid}
	if v.idle = rssMiB(v.pid); v.idle == 0 {
		t.Skip("no VmRSS in /proc")
	}
	v.stop, v.sampled = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(v.sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb := uint64(rssMiB(v.pid) * 1024); kb > v.peak.Load() {
				v.peak.Store(kb)
			}
			select {
			case <-v.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return v
}

// check asserts the API answers, writes succeed (at once, or once the
// attack's requests have timed out), and the peak RSS stayed within 100 MiB
// of idle; it logs the figures.
func (v *attacked) check(what string) {
	v.t.Helper()
	if b, code, err := v.request("GET", "/v1/status", nil); err != nil || code != 200 {
		v.t.Fatalf("%s: HTTP API not answering: %d %s %v", what, code, b, err)
	}
	v.waitFor(15*time.Second, "a write to succeed", func() bool {
		_, code, err := v.request("PUT", "/v1/kv/still", []byte("writable"))
		return err == nil && code == 200
	})
	close(v.stop)
	<-v.sampled
	peak := float64(v.peak.Load()) / 1024
	v.t.Logf("%s: RSS idle %.1f MiB, peak %.1f MiB, now %.1f MiB; %d fds open", what, v.idle, peak, rssMiB(v.pid), openFDs(v.pid))
	if peak > v.idle+100 {
		v.t.Fatalf("%s: RSS peaked at %.1f MiB, more than 100 MiB above idle (%.1f MiB)", what, peak, v.idle)
	}
}

// Partial maximum-size gossip frames from 200 connections, against
// --max-gossip-conns 64: each is cut at its header.
func TestPartialGossipFramesStayBounded(t *testing.T) {
	v := startAttacked(t, "--max-gossip-conns", "64")
	header := []byte{'H', 'S', wire.ProtocolVersion, 1, 0, 0, 0, 0}
	be.BigEndian.PutUint32(header[4:], 8<<20)
	chunk := make([]byte, 60<<10)
	for range 200 {
		c, err := net.Dial("tcp", v.gossip)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close() // held open until the test ends
		c.Write(header)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(chunk)
	}
	v.waitFor(15*time.Second, "every connection refused", func() bool {
		return v.metric(`hearsay_transport_closed_connections_total{reason="pre_auth_frame"}`)+v.metric(`hearsay_transport_closed_connections_total{reason="rejected"}`) >= 200
	})
	v.check("200 partial 8 MiB frames")
}

// Two thousand idle gossip connections against --max-gossip-conns 64: the
// rest are closed at once, file descriptors stay few.
func TestIdleGossipConnectionsStayBounded(t *testing.T) {
	v := startAttacked(t, "--max-gossip-conns", "64", "--max-gossip-conns-per-ip", "64")
	for range 2000 {
		c, err := net.Dial("tcp", v.gossip)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	v.waitFor(15*time.Second, "1,936 connections rejected", func() bool {
		return v.metric(`hearsay_transport_closed_connections_total{reason="rejected"}`) >= 2000-64
	})
	if open := v.metric("hearsay_transport_connections"); open > 64 {
		t.Fatalf("%v gossip connections open, the cap is 64", open)
	}
	if fds := openFDs(v.pid); fds > 64+100 {
		t.Fatalf("%d file descriptors open", fds)
	}
	v.check("2000 idle gossip connections")
}

// httpConn opens a raw HTTP connection and sends head.
func httpConn(t *testing.T, addr, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// Three hundred PUTs whose bodies trickle are cut off after
// --http-read-timeout.
func TestTricklingHTTPBodiesAreCutOff(t *testing.T) {
	v := startAttacked(t, "--http-read-timeout", "2s")
	var cut sync.WaitGroup
	for i := range 300 {
		c := httpConn(t, v.http, fmt.Sprintf("PUT /v1/kv/t%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", i))
		cut.Add(1)
		go func() {
			defer cut.Done()
			// Ten bytes every half second until the agent hangs up.
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			done := make(chan struct{})
			go func() { io.Copy(io.Discard, c); close(done) }()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					c.Write([]byte("0123456789"))
				}
			}
		}()
	}
	if b, code, err := v.request("GET", "/v1/status", nil); err != nil || code != 200 {
		t.Fatalf("HTTP API not answering under the trickle: %d %s %v", code, b, err)
	}
	all := make(chan struct{})
	go func() { cut.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(15 * time.Second):
		t.Fatal("trickling requests still open after 15 s")
	}
	if n := v.metric("hearsay_http_body_timeouts_total"); n < 300 {
		t.Fatalf("%v body timeouts counted, want 300", n)
	}
	v.check("300 trickling PUT bodies")
}

// Three hundred PUTs each holding most of a 1 MiB body: the body memory
// bound answers most of them 503 at once.
func TestHeldHTTPBodiesStayBounded(t *testing.T) {
	v := startAttacked(t, "--max-http-body-memory", "16MiB", "--http-read-timeout", "2s")
	body := make([]byte, 1<<20-1)
	var wg sync.WaitGroup
	var busy atomic.Int64
	for i := range 300 {
		c := httpConn(t, v.http, fmt.Sprintf("PUT /v1/kv/h%d HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", i, 1<<20))
		wg.Add(1)
		go func() {
			defer wg.Done()
			go c.Write(body) // and hold the last byte
			resp, err := readStatus(c)
			if err == nil && resp == 503 {
				busy.Add(1)
			}
		}()
	}
	v.waitFor(15*time.Second, "bodies beyond the bound refused", func() bool {
		return v.metric("hearsay_http_body_rejected_total") >= 300-16
	})
	if b, code, err := v.request("GET", "/v1/status", nil); err != nil || code != 200 {
		t.Fatalf("HTTP API not answering: %d %s %v", code, b, err)
	}
	v.check("300 held 1 MiB bodies")
	wg.Wait()
	t.Logf("%d of 300 answered 503", busy.Load())
}

// readStatus reads the status code of an HTTP response on c.
func readStatus(c net.Conn) (int, error) {
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	return strconv.Atoi(f[1])
}

// Three hundred watches against --max-watchers 50: 250 are answered 503.
func TestWatchersAreCapped(t *testing.T) {
	v := startAttacked(t, "--max-watchers", "50")
	codes := make(chan int, 300)
	for i := range 300 {
		path := "/v1/watch?prefix=w"
		if i%2 == 1 {
			path = "/v1/members?watch=1"
		}
		c := httpConn(t, v.http, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		go func() {
			code, _ := readStatus(c)
			codes <- code
		}()
	}
	count := map[int]int{}
	for range 300 {
		count[<-codes]++
	}
	if count[200] != 50 || count[503] != 250 {
		t.Fatalf("watch answers %v, want 50 × 200 and 250 × 503", count)
	}
	if n := v.metric("hearsay_http_watchers"); n != 50 {
		t.Fatalf("hearsay_http_watchers %v, want 50", n)
	}
	v.check("300 watches")
}
