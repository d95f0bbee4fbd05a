package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the hearsay CLI built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hearsay-cluster-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "hearsay")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	build := exec.Command("go", "build", "-race", "-o", binary, "./cmd/hearsay")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build hearsay:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port free for both TCP and UDP right now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// agent is one real hearsay agent process.
type agent struct {
	t      *testing.T
	name   string
	dir    string
	gossip string
	http   string
	join   []string
	extra  []string
	// bin, when set, is the binary to run instead of the package's;
	// env is added to the process environment.
	bin    string
	env    []string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{}

	// https, when set, is the client for an agent serving HTTPS (with
	// --certs-dir): request and get use it with https URLs.
	https *http.Client
}

func newAgent(t *testing.T, name string, join ...string) *agent {
	a := &agent{
		t: t, name: name, dir: filepath.Join(t.TempDir(), name),
		gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		join:   join,
	}
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", a.name, a.log)
		}
	})
	return a
}

func (a *agent) start() {
	a.t.Helper()
	args := []string{"agent", "--name", a.name, "--data-dir", a.dir, "--bind", a.gossip, "--http", a.http, "--log-level", "debug"}
	if len(a.join) > 0 {
		args = append(args, "--join", strings.Join(a.join, ","))
	}
	args = append(args, a.extra...)
	bin := binary
	if a.bin != "" {
		bin = a.bin
	}
	a.cmd = exec.Command(bin, args...)
	a.cmd.Env = append(os.Environ(), a.env...)
	if a.log == nil {
		a.log = new(bytes.Buffer)
	}
	fmt.Fprintf(a.log, "=== start %v\n", args)
	a.cmd.Stdout, a.cmd.Stderr = &lockedWriter{w: a.log}, &lockedWriter{w: a.log}
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(a.cmd, a.exited)
	a.waitFor(30*time.Second, "agent answering", func() bool {
		_, code, err := a.request("GET", "/v1/status", nil)
		return err == nil && code == 200
	})
}

// kill stops the agent with SIGKILL: no leave, no flush.
func (a *agent) kill() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
	a.cmd = nil
}

func (a *agent) request(method, path string, body []byte) ([]byte, int, error) {
	return a.requestCtx(context.Background(), method, path, body)
}

// requestWithin is request with a deadline of its own.
func (a *agent) requestWithin(d time.Duration, method, path string, body []byte) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return a.requestCtx(ctx, method, path, body)
}

func (a *agent) requestCtx(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.url(path), bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := a.client().Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// url is the URL of path on the agent's HTTP API.
func (a *agent) url(path string) string {
	if a.https != nil {
		return "https://" + a.http + path
	}
	return "http://" + a.http + path
}

// client is the HTTP client for the agent.
func (a *agent) client() *http.Client {
	if a.https != nil {
		return a.https
	}
	return &http.Client{Timeout: 5 * time.Second}
}

func (a *agent) put(key, value string) {
	a.t.Helper()
	b, code, err := a.request("PUT", "/v1/kv/"+key, []byte(value))
	if err != nil || code != 200 {
		a.t.Fatalf("%s: put %s: %d %s %v", a.name, key, code, b, err)
	}
}

// get returns the value of key on this agent, and whether it is there.
func (a *agent) get(key string) (string, bool) {
	req, _ := http.NewRequest("GET", a.url("/v1/kv/"+key), nil)
	req.Header.Set("Accept", "application/octet-stream")
	resp, err := a.client().Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode == 200
}

type member struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	State       string `json:"state"`
	Incarnation uint64 `json:"incarnation"`
}

func (a *agent) members() map[string]member {
	b, code, err := a.request("GET", "/v1/members", nil)
	if err != nil || code != 200 {
		return nil
	}
	var ms []member
	if json.Unmarshal(b, &ms) != nil {
		return nil
	}
	out := map[string]member{}
	for _, m := range ms {
		out[m.Name] = m
	}
	return out
}

// metric returns the value of one sample from /metrics, matched by its full
// name and labels as printed, e.g. `hearsay_directmail_retried_mails_total`.
func (a *agent) metric(sample string) float64 {
	b, _, err := a.request("GET", "/metrics", nil)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

func (a *agent) waitFor(d time.Duration, what string, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: timed out after %v waiting for %s", a.name, d, what)
		}
		select {
		case <-a.exited:
			if a.cmd != nil {
				a.t.Fatalf("%s exited while waiting for %s", a.name, what)
			}
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
}

type lockedWriter struct {
	w *bytes.Buffer
}

var logMu = make(chan struct{}, 1)

func (l *lockedWriter) Write(p []byte) (int, error) {
	logMu <- struct{}{}
	defer func() { <-logMu }()
	return l.w.Write(p)
}
