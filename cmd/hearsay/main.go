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
// success, 1 when the answer is "no" (get of an absent key; health of an
// agent that is not live or not ready), 2 on any error (usage, an agent
// that cannot be reached, a server that is not a hearsay agent, a refused
// request).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// Exit codes. Scripts tell "absent" (1) from a failure (2), as with grep.
const (
	exitOK     = 0
	exitAbsent = 1
	exitError  = 2
	exitUsage  = 2
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

// absentError is a negative answer rather than a failure (exit code 1): a
// key that is absent, an agent that is not ready.
type absentError struct{ err error }

func (e absentError) Error() string { return e.err.Error() }
func (e absentError) Unwrap() error { return e.err }

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
	var ae absentError
	switch {
	case errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command"):
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	case errors.As(err, &ae):
		return exitAbsent
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
		// --version prints "hearsay version " and this, as `hearsay
		// version` does. (No SetVersionTemplate: a template links
		// text/template, which keeps every exported method in the binary.)
		Version:       versionDetails(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// "hearsay completion bash|zsh|fish|powershell" prints a completion
	// script (see its --help and the README).

	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", addr, "HTTP address of the agent to talk to (env "+envAddr+")")
	pf.BoolVar(&g.json, "json", false, "machine-readable JSON output")
	pf.DurationVar(&g.timeout, "timeout", defaultTimeout, "timeout of each request to the agent")
	pf.StringVar(&g.certsDir, "certs-dir", os.Getenv(envCertsDir), "certs directory: talk HTTPS, trust its ca.crt and present client.NAME.crt (env "+envCertsDir+")")
	pf.StringVar(&g.certName, "cert-name", os.Getenv(envCertName), "client certificate to present from --certs-dir (default: the only one there, else root) (env "+envCertName+")")

	root.AddCommand(
		withGlobals(newAgentCmd()),
		withGlobals(newDemoCmd()),
		newPutCmd(g),
		newGetCmd(g),
		newDelCmd(g),
		newScanCmd(g),
		newWatchCmd(g),
		newMembersCmd(g),
		newStatusCmd(g),
		newHealthCmd(g),
		withGlobals(newVersionCmd(g), "json"),
		withGlobals(newSimCmd(g), "json"),
		newKeysCmd(g),
		withGlobals(newCertCmd(g), "json", "certs-dir"),
		withGlobals(newBenchCmd(g), "json"),
	)
	return root
}

// clientFlags are the root's persistent flags, which only the client
// commands (those talking to an agent) use.
var clientFlags = []string{"addr", "json", "timeout", "certs-dir", "cert-name"}

// clientAnnotation marks a client command under a command of withGlobals:
// it keeps every client flag.
const clientAnnotation = "hearsay-client"

// withGlobals keeps from cmd and its subcommands the client flags it does
// not use (all but keep): its help does not list them, and giving one is a
// usage error rather than silently ignored.
func withGlobals(cmd *cobra.Command, keep ...string) *cobra.Command {
	foreign := func(c *cobra.Command) []*pflag.Flag {
		if c.Annotations[clientAnnotation] == "true" {
			return nil // a client command under a local one (cert revoke)
		}
		var fs []*pflag.Flag
		for _, name := range clientFlags {
			if slices.Contains(keep, name) {
				continue
			}
			// A flag of the command's own (agent --certs-dir) shadows
			// the global one.
			if f := c.InheritedFlags().Lookup(name); f != nil && c.LocalNonPersistentFlags().Lookup(name) == nil {
				fs = append(fs, f)
			}
		}
		return fs
	}
	setHelp := func(c *cobra.Command) {
		c.SetHelpFunc(func(c *cobra.Command, args []string) {
			fs := foreign(c)
			for _, f := range fs {
				f.Hidden = true
			}
			defer func() {
				for _, f := range fs {
					f.Hidden = false
				}
			}()
			c.Root().HelpFunc()(c, args)
		})
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		setHelp(c)
		if c.RunE != nil {
			run := c.RunE
			c.RunE = func(c *cobra.Command, args []string) error {
				for _, f := range foreign(c) {
					if f.Changed {
						return usagef("--%s is a flag of the client commands (get, put, scan, ...), not of %s", f.Name, c.CommandPath())
					}
				}
				return run(c, args)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
	return cmd
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
