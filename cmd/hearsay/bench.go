package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/bench"
)

// newBenchCmd is `hearsay bench`: measurements of the protocol mechanisms.
func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure the protocol mechanisms on real stores and connections", Args: noArgs}
	var o bench.AntiEntropyOptions
	var mode string
	ae := &cobra.Command{
		Use:   "antientropy",
		Short: "Reconcile two on-disk stores over TCP and report bytes, round trips, time and peak memory",
		Long: `Load two pebble stores with --keys records of --value-size bytes that differ in
--diff keys, then reconcile them push-pull in one anti-entropy exchange over a
loopback TCP connection, with digests (--mode digest) or by sending every
record (--mode full, the baseline). --json prints bytes_total, diff_record_bytes,
round_trips, seconds and peak_rss_bytes among others.`,
		Example: `  hearsay bench antientropy --keys 1000000 --diff 100 --value-size 100 --mode digest --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mode != "digest" && mode != "full" {
				return usagef("--mode must be digest or full, not %q", mode)
			}
			o.Full = mode == "full"
			res, err := bench.AntiEntropy(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "mode %s, keys %d, diff %d, value %d B: %d bytes (%d →, %d ←) in %d messages, %d round trips, %.3f s, peak RSS %d MiB; differing records %d bytes; converged %v\n",
				res.Mode, res.Keys, res.Diff, res.ValueSize, res.BytesTotal, res.BytesToResponder, res.BytesToInitiator, res.MessagesTotal,
				res.RoundTrips, res.Seconds, res.PeakRSSBytes>>20, res.DiffRecordBytes, res.Converged)
			return err
		},
	}
	f := ae.Flags()
	f.IntVar(&o.Keys, "keys", 10_000, "records in each store (N)")
	f.IntVar(&o.Diff, "diff", 100, "keys whose records differ (d)")
	f.IntVar(&o.ValueSize, "value-size", 100, "value size in bytes")
	f.StringVar(&mode, "mode", "digest", "digest or full")
	f.StringVar(&o.Dir, "dir", "", "directory for the two stores (default: a temporary one, removed)")
	cmd.AddCommand(ae, newBenchHTTPCmd(g), newBenchTwinCmd())
	return cmd
}

// newBenchHTTPCmd is `hearsay bench http`: the HTTP load generator.
func newBenchHTTPCmd(g *globals) *cobra.Command {
	o := bench.HTTPLoadOptions{Op: "put", Clients: 64, Duration: 10 * time.Second, Warmup: 2 * time.Second, ValueSize: 100, Seed: 1}
	cmd := &cobra.Command{
		Use:   "http",
		Short: "Load an HTTP key-value API with closed-loop keep-alive clients and report requests/s, latency and server CPU",
		Long: `Run --clients clients, one keep-alive connection each, that PUT (--op put, raw
bodies of --value-size bytes) or GET (--op get, over --keys keys written first)
/v1/kv/<key> on --url as fast as they are answered: --warmup, then --duration
measured. With --pid, the server's CPU time per request is read from /proc.
The target is an agent (an insecure one, or --url https:// is not supported)
or the trivial twin of ` + "`hearsay bench http-twin`" + `: scripts/http-bench.sh runs
both side by side. --json prints requests_per_second, p50_ms, p99_ms and
server_cpu_us_per_request among others.`,
		Example: `  hearsay bench http --url http://127.0.0.1:7946 --op put --clients 64 --duration 10s --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.URL == "" {
				return usagef("--url is required")
			}
			res, err := bench.HTTPLoad(cmd.Context(), o)
			if err != nil {
				return err
			}
			if res.Requests == 0 {
				return fmt.Errorf("bench http: no request succeeded (%d errors; first: %s)", res.Errors, res.FirstError)
			}
			if g.json {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s, %d clients, %d B: %.0f req/s over %.1f s (%d errors), p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, server CPU %.1f µs/request\n",
				res.Op, res.Clients, res.ValueSize, res.PerSecond, res.Seconds, res.Errors, res.P50Ms, res.P99Ms, res.P999Ms, res.ServerCPUMicrosPerRequest)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "server base URL, http://host:port")
	f.StringVar(&o.Op, "op", o.Op, "put or get")
	f.IntVar(&o.Clients, "clients", o.Clients, "concurrent clients, one connection each")
	f.DurationVar(&o.Duration, "duration", o.Duration, "measured phase")
	f.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured phase before it")
	f.IntVar(&o.ValueSize, "value-size", o.ValueSize, "bytes per value")
	f.IntVar(&o.Keys, "keys", 1000, "keys GET reads (written first); keys each PUT client cycles through (0: always new keys)")
	f.IntVar(&o.PID, "pid", 0, "server process id, to report its CPU time per request (Linux)")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the GET key order")
	return cmd
}

// newBenchTwinCmd is `hearsay bench http-twin`: the trivial handler the
// agent's API is measured against.
func newBenchTwinCmd() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "http-twin",
		Short: "Serve a trivial in-memory key-value handler on /v1/kv/<key>, the baseline of bench http",
		Long: `Serve PUT and GET /v1/kv/<key> from a map in memory: no durability, no
replication, no authorisation, no metrics. It is what net/http alone does on
this machine, the ceiling the agent's API is compared with. It prints its
address and runs until interrupted.`,
		Example: `  hearsay bench http-twin --listen 127.0.0.1:8099`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("bench http-twin: %w", err)
			}
			srv := &http.Server{Handler: bench.NewTwin(), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "http-twin listening on http://%s\n", ln.Addr())
			go func() {
				<-cmd.Context().Done()
				_ = srv.Close()
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("bench http-twin: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8099", "address to listen on")
	return cmd
}
