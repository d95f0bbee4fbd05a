package main

import (
	"encoding/json"
	"fmt"

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
	cmd.AddCommand(ae)
	return cmd
}
