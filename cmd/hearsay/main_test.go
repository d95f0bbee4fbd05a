package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// bin is the hearsay binary built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hearsay-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "hearsay")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building hearsay: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the test's environment without HEARSAY_ variables, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HEARSAY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

// cli runs the binary to completion with stdin and extra environment.
func cli(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("hearsay %q: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	if code != 0 && !strings.HasPrefix(r.stderr, "error: ") {
		t.Errorf("stderr %q does not start with \"error: \"", r.stderr)
	}
	return r
}

// b64 is a key as the JSON API carries it.
func b64(key string) string { return base64.StdEncoding.EncodeToString([]byte(key)) }

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestVersion(t *testing.T) {
	r := cli(t, nil, "", "version").want(t, 0)
	if !strings.Contains(r.stdout, Version) || !strings.Contains(r.stdout, runtime.Version()) {
		t.Errorf("version output %q lacks %q or %q", r.stdout, Version, runtime.Version())
	}
	r = cli(t, nil, "", "version", "--json").want(t, 0)
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["version"] != Version || v["go"] != runtime.Version() {
		t.Errorf("version --json %q: %v", r.stdout, err)
	}
}

func TestUnreachableAgent(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, args := range [][]string{
		{"get", "k", "--addr", addr},
		{"put", "k", "v", "--addr", addr},
		{"members", "--addr", addr},
		{"watch", "--addr", addr},
	} {
		r := cli(t, nil, "", args...).want(t, exitError)
		if !strings.Contains(r.stderr, "cannot reach agent at "+addr) || !strings.Contains(r.stderr, "hearsay agent") {
			t.Errorf("%v: stderr %q", args, r.stderr)
		}
		if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: error is not one line: %q", args, r.stderr)
		}
	}
	// HEARSAY_ADDR is the default --addr.
	r := cli(t, []string{"HEARSAY_ADDR=" + addr}, "", "status").want(t, exitError)
	if !strings.Contains(r.stderr, "cannot reach agent at "+addr) {
		t.Errorf("with HEARSAY_ADDR: stderr %q", r.stderr)
	}
	// Without either, the default address.
	r = cli(t, nil, "", "--timeout", "2s", "status")
	if r.code == 0 {
		t.Skip("an agent runs at the default address")
	}
	if !strings.Contains(r.stderr, "127.0.0.1:7947") {
		t.Errorf("default address: stderr %q", r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	unknownKey := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(unknownKey, []byte("nmae: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // no agent: errors must come first
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"get", "k", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"--bogus"}, "unknown flag"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"put", "", "v", "--addr", addr}, "key must not be empty"},
		{[]string{"get", "", "--addr", addr}, "key must not be empty"},
		{[]string{"del", "", "--addr", addr}, "key must not be empty"},
		{[]string{"get", "--addr", addr}, "takes KEY"},
		{[]string{"put", "k", "--addr", addr}, "takes KEY VALUE"},
		{[]string{"members", "extra", "--addr", addr}, "no arguments"},
		{[]string{"scan", "--limit", "-1", "--addr", addr}, "--limit"},
		{[]string{"get", "k", "--timeout", "soon"}, "invalid argument"},
		{[]string{"agent", "--max-value-size", "abc"}, "invalid size"},
		{[]string{"agent", "--log-level", "loud", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"}, "--log-level"},
		{[]string{"agent", "--config", unknownKey}, `unknown key "nmae"`},
		{[]string{"demo", "--nodes", "0"}, "--nodes"},
		{[]string{"agent", "--addr", addr}, "--addr is a flag of the client commands"},
		{[]string{"keys", "generate", "--json"}, "--json is a flag of the client commands"},
		{[]string{"get", "--key-base64", "not base64!", "--addr", addr}, "--key-base64"},
		{[]string{"get", "--key-base64", "", "--addr", addr}, "key must not be empty"},
	}
	for _, c := range cases {
		r := cli(t, nil, "", c.args...)
		if r.code != exitUsage {
			t.Errorf("%q: exit code %d, want %d; stderr %q", c.args, r.code, exitUsage, r.stderr)
			continue
		}
		if !strings.HasPrefix(r.stderr, "error: ") || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%q: stderr %q, want an error mentioning %q", c.args, r.stderr, c.msg)
		}
		if strings.Contains(r.stderr, "cannot reach") {
			t.Errorf("%q: asked the agent before checking the arguments", c.args)
		}
	}
}

// agentProc is an agent process started by a test.
type agentProc struct {
	cmd    *exec.Cmd
	addr   string // HTTP
	gossip string
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done is closed
	logs   *bytes.Buffer
}

// startAgent runs `hearsay agent` on free loopback ports and waits until
// its status answers. The agent is killed at the end of the test if still
// running.
func startAgent(t *testing.T, name string, extra ...string) *agentProc {
	t.Helper()
	return startAgentArgs(t, name, append([]string{"--data-dir", t.TempDir(), "--no-sync"}, extra...)...)
}

// startAgentArgs is startAgent without a data directory of its own: args
// choose the storage.
func startAgentArgs(t *testing.T, name string, extra ...string) *agentProc {
	t.Helper()
	a := spawnAgent(t, name, func(a *agentProc) []string {
		return append([]string{"--name", name, "--bind", a.gossip, "--http", a.addr, "--log-level", "warn"}, extra...)
	})
	waitStatus(t, a.addr, a.done, &a.err)
	return a
}

// spawnAgent starts `hearsay agent` with the arguments args returns for
// the free loopback ports it picked, and kills it at the end of the test,
// printing its logs if the test failed. It does not wait for it to answer.
func spawnAgent(t *testing.T, label string, args func(a *agentProc) []string) *agentProc {
	t.Helper()
	a := &agentProc{
		addr:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		done:   make(chan struct{}),
		logs:   &bytes.Buffer{},
	}
	a.cmd = exec.Command(bin, append([]string{"agent"}, args(a)...)...)
	a.cmd.Env = cleanEnv()
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.err = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("agent %s logs:\n%s", label, a.logs)
		}
	})
	return a
}

// waitStatus polls http://addr/v1/status until it answers 200, with a
// deadline; exited reports a process that died meanwhile.
func waitStatus(t *testing.T, addr string, exited <-chan struct{}, exitErr *error) {
	t.Helper()
	waitAnswer(t, http.DefaultClient, "http://"+addr+"/v1/status", exited, exitErr)
}

// waitAnswer polls url with c until it answers 200, with a deadline;
// exited reports a process that died meanwhile.
func waitAnswer(t *testing.T, c *http.Client, url string, exited <-chan struct{}, exitErr *error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("agent at %s did not answer within 30s", url)
		case <-exited:
			t.Fatalf("agent at %s exited during start-up: %v", url, *exitErr)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and expects a clean exit.
func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
		if a.err != nil {
			t.Errorf("agent exited with %v after SIGTERM, want 0", a.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop within 30s of SIGTERM")
	}
}

func TestAgentAndClient(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses SIGTERM")
	}
	a := startAgent(t, "cli1")
	run := func(stdin string, args ...string) result {
		t.Helper()
		return cli(t, nil, stdin, append(args, "--addr", a.addr)...)
	}

	// put, get (raw), get --json.
	r := run("", "put", "greeting", "hello world").want(t, 0)
	if !strings.HasPrefix(r.stdout, "OK") {
		t.Errorf("put output %q", r.stdout)
	}
	if r = run("", "get", "greeting").want(t, 0); r.stdout != "hello world" {
		t.Errorf("get stdout %q, want the raw value", r.stdout)
	}
	r = run("", "--json", "put", "dir/with/slashes", "v2").want(t, 0)
	var kv map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &kv); err != nil || kv["key"] != b64("dir/with/slashes") || kv["key_text"] != "dir/with/slashes" || kv["version"] == "" {
		t.Errorf("put --json %q: %v", r.stdout, err)
	}
	r = run("", "get", "--json", "dir/with/slashes").want(t, 0)
	var entry map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &entry); err != nil {
		t.Fatalf("get --json %q: %v", r.stdout, err)
	}
	if entry["key"] != b64("dir/with/slashes") || entry["key_text"] != "dir/with/slashes" || entry["value"] != base64.StdEncoding.EncodeToString([]byte("v2")) || entry["version"] != kv["version"] {
		t.Errorf("get --json %v, put gave %v", entry, kv)
	}

	// put from stdin, binary safe.
	run("bin\x00ary\n", "put", "stdin", "-").want(t, 0)
	if r = run("", "get", "stdin").want(t, 0); r.stdout != "bin\x00ary\n" {
		t.Errorf("value from stdin read back as %q", r.stdout)
	}

	// get of an absent key: exit 1 and the message.
	r = run("", "get", "absent").want(t, exitAbsent)
	if strings.TrimSpace(r.stderr) != `error: key "absent" not found` || r.stdout != "" {
		t.Errorf("get absent: stdout %q stderr %q", r.stdout, r.stderr)
	}

	// Server errors pass through, and exit 2.
	big := strings.Repeat("x", 2<<20)
	r = run(big, "put", "big", "-").want(t, exitError)
	if !strings.Contains(r.stderr, "value too large") {
		t.Errorf("oversized put: stderr %q", r.stderr)
	}

	// del, then get fails.
	r = run("", "del", "greeting").want(t, 0)
	if !strings.HasPrefix(r.stdout, "OK") {
		t.Errorf("del output %q", r.stdout)
	}
	r = run("", "--json", "del", "greeting").want(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &kv); err != nil || kv["key"] != b64("greeting") {
		t.Errorf("del --json %q: %v", r.stdout, err)
	}
	run("", "get", "greeting").want(t, exitAbsent)

	// scan: more keys than a page, so that the CLI follows "next".
	const many = 1005
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := range many {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/kv/many/%04d", a.addr, i), strings.NewReader(strconv.Itoa(i)))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("put many/%04d: %s", i, resp.Status)
		}
	}
	r = run("", "scan", "--prefix", "many/").want(t, 0)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != many || lines[0] != "many/0000\t0" || lines[many-1] != fmt.Sprintf("many/%04d\t%d", many-1, many-1) {
		t.Errorf("scan: %d lines (want %d), first %q, last %q", len(lines), many, lines[0], lines[len(lines)-1])
	}
	r = run("", "scan", "--prefix", "many/", "--limit", "5").want(t, 0)
	if got := strings.Count(r.stdout, "\n"); got != 5 {
		t.Errorf("scan --limit 5: %d lines", got)
	}
	r = run("", "--json", "scan", "--prefix", "many/", "--limit", "3").want(t, 0)
	var entries []map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 3 {
		t.Fatalf("scan --json %q: %v", r.stdout, err)
	}
	if e := entries[2]; e["key"] != b64("many/0002") || e["key_text"] != "many/0002" || e["value"] != base64.StdEncoding.EncodeToString([]byte("2")) || e["version"] == "" {
		t.Errorf("scan --json entry %v", e)
	}
	r = run("", "--json", "scan", "--prefix", "nothing/").want(t, 0)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty scan --json %q, want []", r.stdout)
	}

	// members: a table, and JSON objects with the four fields.
	r = run("", "members").want(t, 0)
	header := regexp.MustCompile(`^NAME\s+ADDRESS\s+STATE\s+INCARNATION\n`)
	if !header.MatchString(r.stdout) || !strings.Contains(r.stdout, "cli1") || !strings.Contains(r.stdout, a.gossip) || !strings.Contains(r.stdout, "alive") {
		t.Errorf("members table:\n%s", r.stdout)
	}
	r = run("", "members", "--json").want(t, 0)
	var members []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &members); err != nil || len(members) != 1 {
		t.Fatalf("members --json %q: %v", r.stdout, err)
	}
	for _, f := range []string{"name", "address", "state", "incarnation"} {
		if _, ok := members[0][f]; !ok {
			t.Errorf("members --json lacks %q: %s", f, r.stdout)
		}
	}

	// status.
	r = run("", "status").want(t, 0)
	if !strings.Contains(r.stdout, "cli1") || !strings.Contains(r.stdout, a.addr) {
		t.Errorf("status:\n%s", r.stdout)
	}
	r = run("", "status", "--json").want(t, 0)
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st["name"] != "cli1" || st["version"] != Version || st["http_address"] != a.addr || st["storage"] != "disk" {
		t.Errorf("status --json %q: %v", r.stdout, err)
	}

	a.stop(t)
}

// watcher is a running `hearsay watch`.
type watcher struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
}

func startWatch(t *testing.T, args ...string) *watcher {
	t.Helper()
	w := &watcher{lines: make(chan string, 100), done: make(chan error, 1)}
	w.cmd = exec.Command(bin, args...)
	w.cmd.Env = cleanEnv()
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	// The watch is in place once it says so on stderr.
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stderr).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.done <- w.cmd.Wait()
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "watching") {
			t.Fatalf("watch said %q", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not start within 20s")
	}
	return w
}

func (w *watcher) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatal("watch output ended")
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("no watch line within 20s")
	}
	return ""
}

func TestWatch(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses signals")
	}
	a := startAgent(t, "watch1")
	// A change made before the watches start: replayed, but not --from-now.
	cli(t, nil, "", "put", "w/0", "zero", "--addr", a.addr).want(t, 0)
	human := startWatch(t, "watch", "--prefix", "w/", "--addr", a.addr)
	asJSON := startWatch(t, "watch", "--json", "--from-now", "--retry-for", "1s", "--addr", a.addr)
	if l := human.next(t); l != "put\tw/0\tzero" {
		t.Errorf("watch line %q, want the replayed put of w/0", l)
	}

	cli(t, nil, "", "put", "w/1", "one", "--addr", a.addr).want(t, 0)
	cli(t, nil, "", "put", "other", "x", "--addr", a.addr).want(t, 0)
	cli(t, nil, "", "del", "w/1", "--addr", a.addr).want(t, 0)

	if l := human.next(t); l != "put\tw/1\tone" {
		t.Errorf("watch line %q", l)
	}
	if l := human.next(t); l != "delete\tw/1" {
		t.Errorf("watch line %q", l)
	}
	var ev struct {
		Key, Value, Version string
		Deleted             bool
		Revision            uint64
	}
	var last uint64
	for i, want := range []struct {
		key     string
		deleted bool
	}{{"w/1", false}, {"other", false}, {"w/1", true}} {
		l := asJSON.next(t)
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Key != b64(want.key) || ev.Deleted != want.deleted || ev.Version == "" || ev.Revision <= last {
			t.Errorf("json watch line %d: %q (%v)", i, l, err)
		}
		last = ev.Revision
	}

	// Ctrl-C ends a watch with exit 0.
	if err := human.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range human.lines {
	}
	if err := <-human.done; err != nil {
		t.Errorf("watch exited with %v after SIGINT, want 0", err)
	}

	// An agent that stays stopped ends the other watch with an error
	// after --retry-for.
	a.stop(t)
	for range asJSON.lines {
	}
	if err := <-asJSON.done; err == nil {
		t.Error("watch exited 0 when the agent stopped for longer than --retry-for")
	}
}

// freePortRange returns a base port such that base..base+n-1 were free.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := freePort(t)
		if base+n-1 > 65535 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			addr := fmt.Sprintf("127.0.0.1:%d", p)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			ln.Close()
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				ok = false
				break
			}
			pc.Close()
		}
		if ok {
			return base
		}
	}
	t.Skip("found no range of free ports")
	return 0
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	if runtime.GOOS == "windows" {
		t.Skip("uses signals")
	}
	base := freePortRange(t, 4)
	cmd := exec.Command(bin, "demo", "--nodes", "2", "--base-port", strconv.Itoa(base), "--log-level", "warn")
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer // written by the process's copier while the test reads it
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	banner := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if !sent && strings.Contains(sc.Text(), "Press Ctrl-C") {
				banner <- b.String()
				sent = true
			}
		}
		if !sent {
			banner <- b.String()
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("demo stderr:\n%s", logs.String())
		}
	})

	var text string
	select {
	case text = <-banner:
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not start within 60s")
	}
	n1 := fmt.Sprintf("127.0.0.1:%d", base+1)
	n2 := fmt.Sprintf("127.0.0.1:%d", base+3)
	for _, want := range []string{"n1", "n2", n1, n2, fmt.Sprintf("127.0.0.1:%d", base), "hearsay", "put"} {
		if !strings.Contains(text, want) {
			t.Errorf("banner lacks %q:\n%s", want, text)
		}
	}
	m := regexp.MustCompile(`data in (\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("banner does not say where the data is:\n%s", text)
	}
	dataDir := m[1]

	// A write through n1 reaches n2.
	cli(t, nil, "", "put", "demo-key", "demo-value", "--addr", n1).want(t, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		r := cli(t, nil, "", "get", "demo-key", "--addr", n2)
		if r.code == 0 && r.stdout == "demo-value" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("n2 never saw the write: %+v", r)
		case <-tick.C:
		}
	}
	r := cli(t, nil, "", "members", "--json", "--addr", n2).want(t, 0)
	if !strings.Contains(r.stdout, `"n1"`) || !strings.Contains(r.stdout, `"n2"`) {
		t.Errorf("n2 members: %s", r.stdout)
	}

	// Ctrl-C stops every node and removes the temporary data.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo exited with %v, want 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not stop within 60s")
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data dir %s still there after the demo (%v)", dataDir, err)
	}
	if _, err := net.Dial("tcp", n1); err == nil {
		t.Errorf("n1 still answers after the demo stopped")
	}
}

// TestHealth: `hearsay health` exits 0 while the agent is live, and
// `health --ready` exits 0 only when it is ready; a joiner whose seed does
// not answer is live but not ready, and says why.
func TestHealth(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses SIGTERM")
	}
	a := startAgent(t, "h1")
	run := func(addr string, args ...string) result {
		t.Helper()
		return cli(t, nil, "", append(args, "--addr", addr)...)
	}
	if r := run(a.addr, "health").want(t, 0); r.stdout != "live\n" {
		t.Errorf("health: %q", r.stdout)
	}
	if r := run(a.addr, "health", "--ready").want(t, 0); r.stdout != "ready\n" {
		t.Errorf("health --ready: %q", r.stdout)
	}
	r := run(a.addr, "health", "--ready", "--json").want(t, 0)
	var rr struct {
		Ready   bool     `json:"ready"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rr); err != nil || !rr.Ready {
		t.Errorf("health --ready --json %q: %v", r.stdout, err)
	}

	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	j := startAgent(t, "h2", "--join", dead)
	run(j.addr, "health").want(t, 0)
	r = run(j.addr, "health", "--ready").want(t, 1)
	if !strings.Contains(r.stdout, "not joined") || !strings.Contains(r.stderr, "not ready") {
		t.Errorf("health --ready of a node not joined: stdout %q stderr %q", r.stdout, r.stderr)
	}
	r = run(j.addr, "health", "--ready", "--json").want(t, 1)
	if err := json.Unmarshal([]byte(r.stdout), &rr); err != nil || rr.Ready || len(rr.Reasons) == 0 {
		t.Errorf("health --ready --json of a node not joined %q: %v", r.stdout, err)
	}
	r = run(j.addr, "status").want(t, 0)
	if !strings.Contains(r.stdout, "joined:") || !strings.Contains(r.stdout, "not joined") {
		t.Errorf("status of a node not joined:\n%s", r.stdout)
	}

	a.stop(t)
	r = run(a.addr, "health").want(t, 1)
	if !strings.Contains(r.stderr, "cannot reach agent") {
		t.Errorf("health of a stopped agent: stderr %q", r.stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBinaryKeysCLI: the CLI round-trips any key. Keys with NUL (given
// with --key-base64, since a command line cannot hold NUL) and \xff (given
// as they are) are written, read back, listed page by page (pages of 1, so
// that every cursor is a binary key) and watched, with neither corruption
// nor raw binary on the terminal.
func TestBinaryKeysCLI(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses signals")
	}
	a := startAgent(t, "bin1")
	run := func(args ...string) result {
		t.Helper()
		return cli(t, nil, "", append(args, "--addr", a.addr)...)
	}
	human := startWatch(t, "watch", "--addr", a.addr)
	asB64 := startWatch(t, "watch", "--key-base64", "--prefix", b64("\x00"), "--addr", a.addr)
	asJSON := startWatch(t, "watch", "--json", "--addr", a.addr)

	keys := []string{"\x00", "\x00\xff", "a", "\xff", "\xff\x00"} // in key order
	for _, k := range keys {                                      // values from stdin: they hold NUL too
		if strings.ContainsRune(k, 0) {
			cli(t, nil, "value\x01"+k, "put", "--key-base64", b64(k), "-", "--addr", a.addr).want(t, 0)
		} else {
			cli(t, nil, "value\x01"+k, "put", k, "-", "--addr", a.addr).want(t, 0)
		}
	}
	for _, k := range keys {
		if r := run("get", "--key-base64", b64(k)).want(t, 0); r.stdout != "value\x01"+k {
			t.Errorf("get %q: %q", k, r.stdout)
		}
	}
	if r := run("get", "\xff").want(t, 0); r.stdout != "value\x01\xff" {
		t.Errorf("get \\xff as an argument: %q", r.stdout)
	}

	// Pages of one entry: every cursor is one of the keys.
	r := run("scan", "--json", "--page-size", "1").want(t, 0)
	var entries []struct {
		Key     string  `json:"key"`
		KeyText *string `json:"key_text"`
		Value   string  `json:"value"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("scan --json: %v\n%s", err, r.stdout)
	}
	var got []string
	for _, e := range entries {
		k, err := base64.StdEncoding.DecodeString(e.Key)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(k))
		if (e.KeyText != nil) != utf8.Valid(k) || (e.KeyText != nil && *e.KeyText != string(k)) {
			t.Errorf("key %q: key_text %v", k, e.KeyText)
		}
	}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", keys) {
		t.Errorf("scan pages of 1: %q, want %q", got, keys)
	}
	r = run("scan", "--key-base64", "--page-size", "2", "--prefix", b64("\xff")).want(t, 0)
	if want := b64("\xff") + "\t\"value\\x01\\xff\"\n" + b64("\xff\x00") + "\t\"value\\x01\\xff\\x00\"\n"; r.stdout != want {
		t.Errorf("scan --key-base64 --prefix \\xff:\n%q, want\n%q", r.stdout, want)
	}
	r = run("scan", "--page-size", "1").want(t, 0)
	want := `"\x00"	"value\x01\x00"` + "\n" + `"\x00\xff"	"value\x01\x00\xff"` + "\n" + `a	"value\x01a"` + "\n" +
		`"\xff"	"value\x01\xff"` + "\n" + `"\xff\x00"	"value\x01\xff\x00"` + "\n"
	if r.stdout != want {
		t.Errorf("scan, human-readable:\n%s\nwant\n%s", r.stdout, want)
	}

	for _, k := range keys {
		l := human.next(t)
		if want := "put\t" + strconv.Quote(k) + "\t" + strconv.Quote("value\x01"+k); k != "a" && l != want {
			t.Errorf("watch line %q, want %q", l, want)
		}
		if !utf8.ValidString(l) || strings.ContainsAny(l, "\x00\x01") {
			t.Errorf("watch printed raw binary: %q", l)
		}
		var ev struct{ Key string }
		if l := asJSON.next(t); json.Unmarshal([]byte(l), &ev) != nil || ev.Key != b64(k) {
			t.Errorf("watch --json line %q, want key %q", l, b64(k))
		}
	}
	for _, k := range keys[:2] {
		if l := asB64.next(t); !strings.HasPrefix(l, "put\t"+b64(k)+"\t") {
			t.Errorf("watch --key-base64 line %q, want key %s", l, b64(k))
		}
	}
	run("del", "--key-base64", b64("\x00\xff")).want(t, 0)
	run("get", "--key-base64", b64("\x00\xff")).want(t, exitAbsent)
	if l := asB64.next(t); l != "delete\t"+b64("\x00\xff") {
		t.Errorf("watch --key-base64 delete line %q", l)
	}

	// A too-long key is not echoed whole.
	long := strings.Repeat("k", 5000)
	r = run("get", long).want(t, exitError)
	if len(r.stderr) > 300 || !strings.Contains(r.stderr, "5000 bytes") {
		t.Errorf("get of a 5000-byte key: stderr (%d bytes) %q", len(r.stderr), r.stderr)
	}
}

// TestNotHearsay: a server that is not a hearsay agent is not taken for
// one: its 404 is not "key not found" (exit 1) but an error (exit 2).
func TestNotHearsay(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "nginx")
		http.NotFound(w, r)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, args := range [][]string{{"get", "k"}, {"put", "k", "v"}, {"status"}, {"scan"}} {
		r := cli(t, nil, "", append(args, "--addr", addr)...).want(t, exitError)
		if !strings.Contains(r.stderr, "not a hearsay agent") || !strings.Contains(r.stderr, "nginx") {
			t.Errorf("%q: stderr %q", args, r.stderr)
		}
	}
	// health is a probe: every failure is 1 (Docker reserves 2).
	r := cli(t, nil, "", "health", "--addr", addr).want(t, 1)
	if !strings.Contains(r.stderr, "not a hearsay agent") {
		t.Errorf("health: stderr %q", r.stderr)
	}
}

// TestHelpAndVersion: --version, a visible completion command, and client
// flags kept out of the commands that do not use them.
func TestHelpAndVersion(t *testing.T) {
	v := cli(t, nil, "", "version").want(t, 0)
	if r := cli(t, nil, "", "--version").want(t, 0); r.stdout != v.stdout {
		t.Errorf("--version %q, version %q", r.stdout, v.stdout)
	}
	if r := cli(t, nil, "", "--help").want(t, 0); !strings.Contains(r.stdout, "completion") {
		t.Errorf("--help does not list completion:\n%s", r.stdout)
	}
	if r := cli(t, nil, "", "completion", "bash").want(t, 0); !strings.Contains(r.stdout, "hearsay") {
		t.Errorf("completion bash: %.200s", r.stdout)
	}
	r := cli(t, nil, "", "agent", "--help").want(t, 0)
	for _, f := range []string{"--addr", "--timeout", "--cert-name", "--json"} {
		if strings.Contains(r.stdout, f+" ") {
			t.Errorf("agent --help lists the client flag %s", f)
		}
	}
	for _, f := range []string{"--data-dir", "--in-memory", "--certs-dir", "--http"} {
		if !strings.Contains(r.stdout, f+" ") {
			t.Errorf("agent --help lacks %s", f)
		}
	}
	if r := cli(t, nil, "", "get", "--help").want(t, 0); !strings.Contains(r.stdout, "--addr") || !strings.Contains(r.stdout, "--key-base64") {
		t.Errorf("get --help lacks --addr or --key-base64:\n%s", r.stdout)
	}
	if r := cli(t, nil, "", "sim", "--help").want(t, 0); !strings.Contains(r.stdout, "--json") || strings.Contains(r.stdout, "--addr") {
		t.Errorf("sim --help: want --json, not --addr:\n%s", r.stdout)
	}
}

// TestAgentNeedsStorage: without --data-dir an agent refuses to start
// unless --in-memory is given, and its status says which.
func TestAgentNeedsStorage(t *testing.T) {
	r := cli(t, nil, "", "agent", "--name", "m", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0").want(t, exitError)
	if !strings.Contains(r.stderr, "--in-memory") || !strings.Contains(r.stderr, "--data-dir") {
		t.Errorf("agent without storage: stderr %q", r.stderr)
	}
	a := startAgentArgs(t, "mem1", "--in-memory")
	r = cli(t, nil, "", "status", "--json", "--addr", a.addr).want(t, 0)
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st["storage"] != "memory" || st["data_dir"] != nil {
		t.Errorf("status --json of an in-memory agent %q: %v", r.stdout, err)
	}
	if r := cli(t, nil, "", "status", "--addr", a.addr).want(t, 0); !strings.Contains(r.stdout, "memory") {
		t.Errorf("status of an in-memory agent:\n%s", r.stdout)
	}
}
