package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
)

// Timings of the demo.
const (
	demoStartTimeout = 30 * time.Second // for every agent to answer /v1/status
	demoJoinTimeout  = 15 * time.Second // for node 1 to see every node alive, and every node to be ready
	demoStopGrace    = 10 * time.Second // between SIGTERM and SIGKILL
	demoPoll         = 100 * time.Millisecond
)

type demoOptions struct {
	nodes    int
	basePort int
	dataDir  string
	keep     bool
	logLevel string
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local cluster of agent processes on loopback, until Ctrl-C",
		Long: `Run a local cluster: --nodes agent processes on 127.0.0.1. Node i (from 0)
gossips on base-port+2i and serves HTTP on base-port+2i+1, so with the
defaults node n1 serves HTTP on 127.0.0.1:7947, where the other commands
look by default. Nodes n2... join n1. Each node keeps its data in its own
directory, under a temporary directory removed at exit (unless --keep), or
under --data-dir (kept). Logs of node nK are printed prefixed with [nK].
Ctrl-C stops every node gracefully.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.nodes < 1 || o.nodes > 100 {
				return usagef("--nodes %d: want 1 to 100", o.nodes)
			}
			if o.basePort < 1 || o.basePort+2*o.nodes-1 > 65535 {
				return usagef("--base-port %d: the ports up to base-port+2*nodes-1 must be at most 65535", o.basePort)
			}
			return runDemo(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 3, "number of agent processes")
	f.IntVar(&o.basePort, "base-port", 7946, "first port: node i gossips on base-port+2i and serves HTTP on base-port+2i+1")
	f.StringVar(&o.dataDir, "data-dir", "", "keep the nodes' data under this directory (kept at exit; default: a temporary directory)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary data directory at exit")
	f.StringVar(&o.logLevel, "log-level", "info", "log level of the agents: debug, info, warn or error")
	return cmd
}

// demoNode is one agent process of the demo.
type demoNode struct {
	name   string
	gossip string
	http   string
	dir    string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done is closed
}

func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) (retErr error) {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: finding this program to start agents: %w", err)
	}
	ignoreBrokenPipe()
	nodes := make([]*demoNode, o.nodes)
	for i := range nodes {
		nodes[i] = &demoNode{
			name:   fmt.Sprintf("n%d", i+1),
			gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.basePort+2*i)),
			http:   net.JoinHostPort("127.0.0.1", strconv.Itoa(o.basePort+2*i+1)),
			done:   make(chan struct{}),
		}
	}
	if err := checkPortsFree(nodes); err != nil {
		return err
	}

	root, temp := o.dataDir, false
	if root == "" {
		if root, err = os.MkdirTemp("", "hearsay-demo-"); err != nil {
			return fmt.Errorf("demo: creating a data directory: %w", err)
		}
		temp = true
	} else if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("demo: creating data directory: %w", err)
	}
	if temp && !o.keep {
		defer func() {
			if err := os.RemoveAll(root); err != nil {
				fmt.Fprintf(stderr, "demo: removing %s: %v\n", root, err)
			}
		}()
	}

	logs := &lockedWriter{w: stderr}
	exits := make(chan *demoNode, len(nodes))
	started := []*demoNode{}
	defer func() { stopNodes(started, stderr) }()
	for i, n := range nodes {
		n.dir = filepath.Join(root, n.name)
		args := []string{"agent",
			"--name", n.name,
			"--data-dir", n.dir,
			"--bind", n.gossip,
			"--http", n.http,
			"--cluster", "hearsay-demo",
			"--log-level", o.logLevel,
			"--log-format", "text",
		}
		if i > 0 {
			args = append(args, "--join", nodes[0].gossip)
		}
		n.cmd = exec.Command(exe, args...)
		n.cmd.Env = agentEnv()
		n.cmd.Stdout = &prefixWriter{prefix: "[" + n.name + "] ", w: logs}
		n.cmd.Stderr = n.cmd.Stdout
		n.cmd.WaitDelay = 2 * time.Second
		setDemoProcAttr(n.cmd)
		if err := n.cmd.Start(); err != nil {
			return fmt.Errorf("demo: starting %s: %w", n.name, err)
		}
		started = append(started, n)
		go func() {
			n.err = n.cmd.Wait()
			close(n.done)
			exits <- n
		}()
	}

	for _, n := range nodes {
		if err := waitAgent(ctx, n); err != nil {
			return err
		}
	}
	joined := waitMembers(ctx, nodes)
	if ctx.Err() != nil {
		return nil
	}
	printDemoBanner(stdout, nodes, root, temp && !o.keep, joined)

	// Foreground until interrupted, reporting nodes that die on their own.
	alive := len(nodes)
	for alive > 0 {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "demo: stopping every node...")
			return nil
		case n := <-exits:
			alive--
			fmt.Fprintf(stderr, "demo: node %s (HTTP %s) exited unexpectedly: %v; %d node(s) still running\n",
				n.name, n.http, exitDescription(n.err), alive)
		}
	}
	return errors.New("demo: every node has exited")
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// checkPortsFree fails early, with advice, when a demo port is taken.
func checkPortsFree(nodes []*demoNode) error {
	for _, n := range nodes {
		for _, addr := range []string{n.gossip, n.http} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("demo: port %s is in use (another agent or demo?); stop it or pick other ports with --base-port", addr)
			}
			_ = ln.Close()
		}
		pc, err := net.ListenPacket("udp", n.gossip)
		if err != nil {
			return fmt.Errorf("demo: UDP port %s is in use (another agent or demo?); stop it or pick other ports with --base-port", n.gossip)
		}
		_ = pc.Close()
	}
	return nil
}

// agentEnv is this process's environment without HEARSAY_ variables, so that
// a config meant for another agent does not leak into the demo's.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, agent.EnvPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// waitAgent polls the node's /v1/status until it answers, the node exits,
// the deadline passes or ctx is done.
func waitAgent(ctx context.Context, n *demoNode) error {
	ctx, cancel := context.WithTimeout(ctx, demoStartTimeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(demoPoll)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.http+"/v1/status", nil)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("demo: node %s did not answer on http://%s/v1/status within %v; see its log lines above", n.name, n.http, demoStartTimeout)
			}
			return nil // interrupted
		case <-n.done:
			return fmt.Errorf("demo: node %s exited during start-up (%s); see its log lines above", n.name, exitDescription(n.err))
		case <-tick.C:
		}
	}
}

// waitMembers waits until the first node sees every node alive and every
// node is ready (joined, clock measured, writable), and reports whether
// that happened in time.
func waitMembers(ctx context.Context, nodes []*demoNode) bool {
	ctx, cancel := context.WithTimeout(ctx, demoJoinTimeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(demoPoll)
	defer tick.Stop()
	status := func(n *demoNode) (agent.StatusResponse, bool) {
		var st agent.StatusResponse
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.http+"/v1/status", nil)
		if err != nil {
			return st, false
		}
		resp, err := hc.Do(req)
		if err != nil {
			return st, false
		}
		defer resp.Body.Close()
		return st, json.NewDecoder(resp.Body).Decode(&st) == nil
	}
	for {
		done := true
		for i, n := range nodes {
			st, ok := status(n)
			if !ok || !st.Ready || (i == 0 && st.Alive < len(nodes)) {
				done = false
				break
			}
		}
		if done {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

func printDemoBanner(w io.Writer, nodes []*demoNode, root string, removed, joined bool) {
	var b bytes.Buffer
	where := root + " (kept at exit)"
	if removed {
		where = root + " (removed at exit; --keep keeps it)"
	}
	fmt.Fprintf(&b, "\nhearsay demo: %d node(s) running, data in %s\n\n", len(nodes), where)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tHTTP\tGOSSIP\tDATA")
	for _, n := range nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n.name, n.http, n.gossip, n.dir)
	}
	_ = tw.Flush()
	if !joined {
		fmt.Fprintf(&b, "\n(not every node is alive in %s's view and ready yet; 'hearsay members' and 'hearsay health --ready' show progress)\n", nodes[0].name)
	}
	addr := ""
	if nodes[0].http != defaultAddr {
		addr = " --addr " + nodes[0].http
	}
	other := nodes[len(nodes)-1]
	hs := cliName()
	examples := [][2]string{
		{hs + addr + " put greeting hello", "write through " + nodes[0].name},
		{hs + " --addr " + other.http + " get greeting", "read it back from " + other.name},
		{hs + addr + " scan --prefix gr", "list keys by prefix"},
		{hs + addr + ` watch --prefix ""`, "stream every change"},
		{hs + addr + " members", "the membership view"},
		{"curl -s http://" + nodes[0].http + "/v1/status", "the HTTP API"},
	}
	fmt.Fprintf(&b, "\nDashboard: http://%s/ui/ (members, updates and how far they spread, traffic)\n", nodes[0].http)
	fmt.Fprintf(&b, "\nTry, in another terminal:\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, e := range examples {
		fmt.Fprintf(tw, "  %s\t# %s\n", e[0], e[1])
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "\nLog lines of node nK are prefixed [nK]. Press Ctrl-C to stop every node.\n\n")
	_, _ = w.Write(b.Bytes())
}

// cliName is how the banner's examples run this program: "hearsay" when
// that is what PATH finds, "go run ./cmd/hearsay" under go run (whose
// binary is in a temporary build directory, on no PATH), else the path of
// this binary.
func cliName() string {
	exe, err := os.Executable()
	if err != nil {
		return "hearsay"
	}
	if p, err := exec.LookPath("hearsay"); err == nil {
		a, errA := os.Stat(p)
		b, errB := os.Stat(exe)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return "hearsay"
		}
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/hearsay"
	}
	return exe
}

// stopNodes sends SIGTERM to every running node, waits up to the grace
// period, then kills those still running, and waits for them all.
func stopNodes(nodes []*demoNode, stderr io.Writer) {
	for _, n := range nodes {
		select {
		case <-n.done:
			continue
		default:
		}
		if err := terminate(n.cmd.Process); err != nil {
			_ = n.cmd.Process.Kill()
		}
	}
	deadline := time.NewTimer(demoStopGrace)
	defer deadline.Stop()
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-deadline.C:
			fmt.Fprintf(stderr, "demo: node %s did not stop within %v; killing it\n", n.name, demoStopGrace)
			_ = n.cmd.Process.Kill()
			<-n.done
			// the deadline has fired: kill the rest without waiting
			for _, m := range nodes {
				select {
				case <-m.done:
				default:
					_ = m.cmd.Process.Kill()
				}
			}
		}
	}
	for _, n := range nodes {
		<-n.done
	}
}

// lockedWriter serializes writes of whole lines from several processes.
// Once a write fails (the reader of a pipe is gone) it drops the rest
// without error, so that the agents' logs keep draining and the agents
// stop gracefully rather than on a broken pipe of their own.
type lockedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	broken bool
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.broken {
		if _, err := l.w.Write(p); err != nil {
			l.broken = true
		}
	}
	return len(p), nil
}

// prefixWriter writes each complete line with a prefix; exec copies a
// child's output into it.
type prefixWriter struct {
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := make([]byte, 0, len(p.prefix)+i+1)
		line = append(append(line, p.prefix...), p.buf[:i+1]...)
		if _, err := p.w.Write(line); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 64<<10 { // a very long line: write it as it is
		if _, err := p.w.Write(append([]byte(p.prefix), append(p.buf, '\n')...)); err != nil {
			return 0, err
		}
		p.buf = p.buf[:0]
	}
	return len(b), nil
}
