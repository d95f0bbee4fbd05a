// Command hearsay runs and talks to hearsay agents.
//
// `hearsay agent` runs a node (the daemon); `hearsay demo` runs a small
// cluster of agent processes on loopback; the other commands (put, get,
// del, scan, watch, members, status, health) are thin clients of an agent's HTTP
// API, at --addr (default $HEARSAY_ADDR, else 127.0.0.1:7947), over HTTPS
// with a client certificate when --certs-dir is given; `hearsay cert`
// makes the certificates.
//
// Errors go to stderr as one line, "error: ...". The exit code is 0 on
// success, 1 on errors, 2 on usage errors.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Version is the build version, printed by `hearsay version` and reported by
// agents. Override it at build time:
//
//	go build -ldflags "-X main.Version=1.2.3" ./cmd/hearsay
var Version = "0.1.0-dev"

// Defaults of the client flags.
const (
	defaultAddr    = "127.0.0.1:7947"
	defaultTimeout = 10 * time.Second
	envAddr        = "HEARSAY_ADDR"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// globals are the flags every client command shares.
type globals struct {
	addr    string
	json    bool
	timeout time.Duration
	// certsDir, when set, makes the client speak HTTPS with the client
	// certificate certName of that directory (see cert.go).
	certsDir string
	certName string
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{}
	root := newRootCmd(g, stdin, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "error: %v\n", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// oneLine joins a multi-line message (errors.Join) with "; ".
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}

func newRootCmd(g *globals, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	addr := os.Getenv(envAddr)
	if addr == "" {
		addr = defaultAddr
	}
	root := &cobra.Command{
		Use:   "hearsay",
		Short: "hearsay: a gossip-replicated, eventually consistent key-value store",
		Long: `hearsay is an eventually consistent key-value store replicated by gossip.

Run a node with "hearsay agent", or a local 3-node cluster with "hearsay demo".
The other commands talk to an agent's HTTP API at --addr.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.HiddenDefaultCmd = true

	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", addr, "HTTP address of the agent to talk to (env "+envAddr+")")
	pf.BoolVar(&g.json, "json", false, "machine-readable JSON output")
	pf.DurationVar(&g.timeout, "timeout", defaultTimeout, "timeout of each request to the agent")
	pf.StringVar(&g.certsDir, "certs-dir", os.Getenv(envCertsDir), "certs directory: talk HTTPS, trust its ca.crt and present client.NAME.crt (env "+envCertsDir+")")
	pf.StringVar(&g.certName, "cert-name", os.Getenv(envCertName), "client certificate to present from --certs-dir (default: the only one there, else root) (env "+envCertName+")")

	root.AddCommand(
		newAgentCmd(),
		newDemoCmd(),
		newPutCmd(g),
		newGetCmd(g),
		newDelCmd(g),
		newScanCmd(g),
		newWatchCmd(g),
		newMembersCmd(g),
		newStatusCmd(g),
		newHealthCmd(g),
		newVersionCmd(g),
		newSimCmd(g),
		newKeysCmd(),
		newCertCmd(g),
		newBenchCmd(g),
	)
	return root
}

// exactArgs is cobra.ExactArgs with a usage error naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			want := "no arguments"
			if len(names) > 0 {
				want = strings.Join(names, " ")
			}
			return usagef("%s takes %s, got %d argument(s)", cmd.CommandPath(), want, len(args))
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error { return exactArgs()(cmd, args) }
