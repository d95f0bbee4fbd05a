package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hearsaydb/hearsay/sim"
)

// newSimCmd is `hearsay sim`: the protocol engine on many virtual nodes.
func newSimCmd(g *globals) *cobra.Command {
	s := sim.DefaultScenario()
	var (
		latency  string
		csvPath  string
		plotPath string
		file     string
		explore  int
		failDir  string
		shrink   int
		byz      string
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate the gossip protocol on thousands of virtual nodes",
		Long: `Run the real protocol engine on many virtual nodes, on a virtual clock and a
virtual network, and measure how an update spreads. The same seed gives the
same output, byte for byte.

The default is the textbook model of Demers et al. (1987): 1,000 nodes in
synchronous cycles, one update from one node, push rumor mongering with
feedback and a counter, one partner per cycle. Measured per run and averaged:
residue (fraction of nodes never reached), traffic (update-carrying messages
per node), t_avg and t_last (cycles until the average and the last node first
hold the update), delivery latency percentiles, convergence time, messages
and bytes per node and per update, false failure detections.

Workloads: one update (the default), or a stream of writes at --write-rate
from random nodes over --keys keys, a --deletes fraction of them deletes.
Faults: --loss, --duplicate, --bandwidth, latency distributions that reorder
messages; partitions, one-way cuts, crashes, restarts, joins and leaves at
given times or at a rate, in a --scenario YAML file (see examples/sim).
Adversaries: --byzantine BEHAVIOUR:FRACTION[,...] (blackhole, future, flooder,
accuser, replayer, forger) makes nodes that run the real engine misbehave on the wire;
the report adds forged_accepted and quarantined, over the honest nodes, and
--no-defences turns quarantine off to compare.

Flags override a --scenario YAML file, whose keys are the flag names.`,
		Example: `  hearsay sim --nodes 1000 --model cycles --mechanism rumor --interest feedback-counter --k 2 --runs 200 --seed 1 --json
  hearsay sim --nodes 10000 --interest blind-coin --k 3 --plot spread.svg
  hearsay sim --nodes 1000 --model async --sampler real --loss 0.01 --write-rate 20 --duration 60s --csv series.csv
  hearsay sim --scenario examples/sim/partition-heal.yaml --json
  hearsay sim --nodes 20 --model async --sampler real --mechanism rumor+anti-entropy --byzantine blackhole:0.2 --runs 5
  hearsay sim --explore 1000 --seed 1
  hearsay sim --seed 8 --explore 1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plotPath != "" && !sim.PlotSupported {
				return usageError{sim.ErrNoPlot}
			}
			if explore > 0 {
				return runExplore(cmd, g, s.Seed, explore, failDir, shrink)
			}
			if byz != "" {
				b, err := sim.ParseByzantine(byz)
				if err != nil {
					return usageError{err}
				}
				s.Byzantine = b
			}
			if latency != "" {
				l, err := sim.ParseLatency(latency)
				if err != nil {
					return usageError{err}
				}
				s.Latency = l
			}
			if file != "" {
				base, err := sim.LoadScenario(file)
				if err != nil {
					return usageError{err}
				}
				// Flags given on the command line win over the file.
				cmd.Flags().Visit(func(f *pflag.Flag) { base.Override(f.Name, s) })
				s = base
			}
			if err := s.Validate(); err != nil {
				return usageError{err}
			}
			progress := newSimProgress(cmd.ErrOrStderr(), isTerminal(os.Stderr))
			rep, err := sim.Run(s, progress)
			if err != nil {
				return err
			}
			if csvPath != "" {
				var b bytes.Buffer
				if err := sim.WriteCSV(&b, rep); err != nil {
					return err
				}
				if err := os.WriteFile(csvPath, b.Bytes(), 0o644); err != nil {
					return fmt.Errorf("write --csv: %w", err)
				}
			}
			if plotPath != "" {
				if err := sim.WritePlot(plotPath, rep); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if g.json {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return sim.WriteSummary(out, rep)
		},
	}
	f := cmd.Flags()
	f.IntVar(&s.Nodes, "nodes", s.Nodes, "number of virtual nodes")
	f.StringVar(&s.Model, "model", s.Model, "timing model: cycles (synchronous, as in Demers et al.) or async")
	f.StringVar(&s.Mechanism, "mechanism", s.Mechanism, "rumor, direct-mail (needs --sampler real), plumtree, anti-entropy, or several joined by + (rumor+anti-entropy, plumtree+anti-entropy)")
	f.StringVar(&s.Direction, "direction", s.Direction, "push, pull or push-pull")
	f.StringVar(&s.Interest, "interest", s.Interest, "loss of interest: feedback-counter, feedback-coin, blind-counter or blind-coin")
	f.IntVar(&s.K, "k", s.K, "loss-of-interest parameter k")
	f.IntVar(&s.Fanout, "fanout", s.Fanout, "partners contacted per node per round")
	f.Float64Var(&s.Loss, "loss", s.Loss, "message loss probability, 0 to 1")
	f.StringVar(&latency, "latency", "", "async model message delay: DURATION, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA (default 10ms)")
	f.StringVar(&s.Sampler, "sampler", s.Sampler, "peer sampling: real (membership component) or oracle (uniform over the true live set)")
	f.Uint64Var(&s.Seed, "seed", s.Seed, "seed of the first run; run i uses seed+i")
	f.IntVar(&s.Runs, "runs", s.Runs, "number of runs to average")
	f.DurationVar((*time.Duration)(&s.Duration), "duration", time.Duration(s.Duration), "virtual time of each run: streams and churn go on until it; a run with nothing left to do ends when the cluster is quiet")
	f.DurationVar((*time.Duration)(&s.Cycle), "cycle", time.Duration(s.Cycle), "cycle length (cycles model) or gossip interval (async), and the time series' step")
	f.DurationVar((*time.Duration)(&s.Drain), "drain", time.Minute, "how long a run may go on after its last scripted write or event, for updates in flight to settle")
	f.DurationVar((*time.Duration)(&s.Suspicion), "suspicion", 0, "real sampler: the membership suspicion timeout (default: the engine's)")
	f.DurationVar((*time.Duration)(&s.MailWindow), "mail-window", 0, "direct mail: batch the writes of this window into one mail per peer (0: mail at once)")
	f.IntVar(&s.TreeFanout, "tree-fanout", 0, "plumtree: eager peers a node starts with (0: the engine's default, 4)")
	f.IntVar(&s.LazyFanout, "lazy-fanout", 0, "plumtree: lazy peers each announcement window goes to, at random (0: every lazy peer; -1: none)")
	f.DurationVar((*time.Duration)(&s.EagerWindow), "eager-window", 0, "plumtree: batch eager pushes of this window into one message per eager peer (0: at once)")
	f.DurationVar((*time.Duration)(&s.IHaveWindow), "ihave-window", 0, "plumtree: batch announcements of this window into one message per lazy peer (0: the engine's default, 100ms)")
	f.IntVar(&s.PruneAfter, "prune-after", 0, "plumtree: duplicate pushes in a row from a peer before its link is pruned (0: the engine's default, 1)")
	f.DurationVar((*time.Duration)(&s.GraftTimeout), "graft-timeout", 0, "plumtree: how long an announced update may stay missing before it is grafted (0: the engine's default, 1s)")
	f.Float64Var(&s.Duplicate, "duplicate", 0, "probability that a message is delivered twice")
	f.Int64Var(&s.Bandwidth, "bandwidth", 0, "capacity of each directed link in bytes per second (0: unlimited)")
	f.BoolVar(&s.Signed, "signed", false, "a certificate cluster: every node gets a certificate from an in-memory CA derived from the seed, and records are signed and verified")
	f.Float64Var(&s.Workload.Rate, "write-rate", 0, "a stream of writes per second of virtual time from random nodes, instead of one update")
	f.IntVar(&s.Workload.Keys, "keys", 100, "keys the write stream writes")
	f.Float64Var(&s.Workload.Deletes, "deletes", 0, "fraction of the stream's writes that delete a written key")
	f.StringVar(&byz, "byzantine", "", "make fractions of the nodes faulty: BEHAVIOUR:FRACTION[,...], behaviours "+strings.Join(sim.Behaviours, ", ")+" (needs --sampler real)")
	f.BoolVar(&s.NoDefences, "no-defences", false, "turn peer scoring's defences off on every node: no quarantine, death claims believed (to compare)")
	f.StringVar(&csvPath, "csv", "", "write the susceptible/infective/removed time series to this CSV file")
	f.StringVar(&plotPath, "plot", "", "draw the infection curve and delivery-latency CDF to this .svg or .png file")
	f.StringVar(&file, "scenario", "", "read the scenario from this YAML file (flags override it)")
	f.IntVar(&explore, "explore", 0, "run N random scenarios, seeds --seed to --seed+N-1, checking every invariant; other scenario flags are ignored")
	f.StringVar(&failDir, "failures-dir", ".", "--explore: where each failing scenario is written (sim-failure-SEED.yaml, and -min.yaml shrunk)")
	f.IntVar(&shrink, "shrink-runs", 100, "--explore: runs spent shrinking each failing scenario (0: no shrinking)")
	return cmd
}

// newSimProgress returns a progress callback that, on a terminal, shows how
// far a simulation has got once it has taken more than two seconds, at
// most five times a second, and clears the line at the end.
func newSimProgress(w io.Writer, terminal bool) func(sim.Progress) {
	if !terminal {
		return nil
	}
	start := time.Now()
	var last time.Time
	shown := false
	return func(p sim.Progress) {
		now := time.Now()
		final := p.Phase == "done" && p.Run == p.Runs
		if now.Sub(start) < 2*time.Second || (!final && now.Sub(last) < 200*time.Millisecond) {
			return
		}
		last = now
		shown = true
		fmt.Fprintf(w, "\r\033[Krun %d/%d: %s, virtual %v of at most %v (%.0fs)", p.Run, p.Runs, p.Phase,
			p.Virtual.Round(time.Second), p.Limit.Round(time.Second), now.Sub(start).Seconds())
		if final && shown {
			fmt.Fprint(w, "\r\033[K")
		}
	}
}

// runExplore is `hearsay sim --explore N`: N random scenarios, each
// checked against the invariants; a failure prints its reproduction and the
// scenario files, and makes the command fail.
func runExplore(cmd *cobra.Command, g *globals, first uint64, n int, dir string, shrink int) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	start := time.Now()
	terminal := isTerminal(os.Stderr)
	rep, err := sim.Explore(sim.ExploreOptions{First: first, Seeds: n, Dir: dir, ShrinkRuns: shrink,
		Progress: func(done int, f *sim.Failure) {
			if f != nil {
				fmt.Fprintf(errOut, "\r\033[KFAIL seed %d: %s\n  reproduce: %s\n  scenario:  %s\n", f.Seed, firstLines(f.Message, 3), f.Reproduce(), f.File)
				if f.Shrunk != nil {
					fmt.Fprintf(errOut, "  shrunk:    %s (%d nodes, %d events): hearsay sim --scenario %s\n", f.ShrunkFile, f.Shrunk.Nodes, len(f.Shrunk.Events), f.ShrunkFile)
				}
			} else if terminal {
				fmt.Fprintf(errOut, "\r\033[Kexplored %d/%d seeds (%.0fs)", done, n, time.Since(start).Seconds())
			}
		}})
	if terminal {
		fmt.Fprint(errOut, "\r\033[K")
	}
	if err != nil {
		return err
	}
	if g.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "explored %d seeds (%d to %d) in %.1fs: %d failed\n", rep.Seeds, first, first+uint64(n)-1, time.Since(start).Seconds(), len(rep.Failures))
		fmt.Fprintf(out, "writes %d (acknowledged %d, unacknowledged %d), crashes %d, fail-stops %d, virtual time %.0fs\n",
			rep.Writes, rep.Acknowledged, rep.Unacked, rep.Crashes, rep.FailStops, rep.Virtual)
		fmt.Fprintf(out, "replicas identical at most %.1fs after the last fault healed (bound %.0fs)\n", rep.MaxSettled, rep.SettleBound)
		for _, f := range rep.Failures {
			fmt.Fprintf(out, "FAIL seed %d: %s  (%s)\n", f.Seed, f.Reproduce(), f.File)
		}
	}
	if len(rep.Failures) > 0 {
		return fmt.Errorf("sim --explore: %d of %d seeds broke an invariant", len(rep.Failures), rep.Seeds)
	}
	return nil
}

// firstLines returns the first n lines of s, indented as a continuation.
func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n  ")
}
