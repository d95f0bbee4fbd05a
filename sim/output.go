package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteSummary prints a human summary of the report.
func WriteSummary(w io.Writer, r *Report) error {
	s := r.Scenario
	var faults []string
	if s.Duplicate > 0 {
		faults = append(faults, fmt.Sprintf("duplication %.2f%%", s.Duplicate*100))
	}
	if s.Bandwidth > 0 {
		faults = append(faults, fmt.Sprintf("bandwidth %d B/s per link", s.Bandwidth))
	}
	if len(s.Events) > 0 {
		faults = append(faults, fmt.Sprintf("%d scripted event(s)", len(s.Events)))
	}
	if s.Churn.any() {
		faults = append(faults, fmt.Sprintf("churn (crash %g/s, join %g/s, leave %g/s)", s.Churn.Crash, s.Churn.Join, s.Churn.Leave))
	}
	if len(s.Byzantine) > 0 {
		var bs []string
		for _, b := range s.Byzantine {
			bs = append(bs, b.String())
		}
		d := "defences on"
		if s.NoDefences {
			d = "defences off"
		}
		faults = append(faults, fmt.Sprintf("byzantine %s (%s)", strings.Join(bs, ","), d))
	}
	workload := "one update"
	if s.Workload.Rate > 0 {
		workload = fmt.Sprintf("%g writes/s over %d keys, %.0f%% deletes", s.Workload.Rate, s.Workload.Keys, s.Workload.Deletes*100)
	}
	extra := ""
	if len(faults) > 0 {
		extra = "\n  faults: " + strings.Join(faults, ", ")
	}
	formed := ""
	if s.Sampler == "real" {
		formed = fmt.Sprintf("  formed    %.1f s (± %.1f) of virtual time from %d simultaneous joins until every node saw every other alive\n", r.Formed, r.Spread["formed"], s.Nodes-1)
	}
	if r.WritesRefused > 0 || r.ClockViolations > 0 {
		formed += fmt.Sprintf("  clock     %.1f writes refused by nodes that knew their clock was off; %.1f acknowledged by a node off by more than the bound (invariant: 0)\n", r.WritesRefused, r.ClockViolations)
	}
	if q := r.Quarantined; q != nil {
		all := "never by every honest node in some run"
		if q.All >= 0 {
			all = fmt.Sprintf("every byzantine node by every honest node within %.1f s", q.All)
		}
		formed += fmt.Sprintf("  byzantine %.1f forged records accepted; quarantined: %.1f (honest, byzantine) pairs, %.1f false (honest, honest); %s\n", r.ForgedAccepted, q.Byzantine, q.False, all)
		switch {
		case r.InventedGone < 0:
			formed += "  invented  members invented by a flooder were still in honest views at the end of some run\n"
		case r.InventedGone > 0:
			formed += fmt.Sprintf("  invented  members invented by a flooder left the last honest view after %.1f s\n", r.InventedGone)
		}
	}
	conv := "never (some running node misses an update at the end)"
	if r.Converged > 0 {
		conv = fmt.Sprintf("%.3f %s (± %.3f), in %.0f%% of runs", r.Convergence, r.Unit, r.Spread["convergence"], r.Converged*100)
	}
	_, err := fmt.Fprintf(w, `hearsay sim: %d nodes, %s model, %s (%s, %s, k=%d, fanout %d), %s sampler, loss %.2f%%, %d run(s) from seed %d
  workload: %s%s

  updates   %.1f per run
  residue   %.4f  (± %.4f)   fraction of (update, running node) pairs never delivered
  traffic   %.3f  (± %.3f)   update-carrying messages per node
  t_avg     %.3f  (± %.3f)   %s from a write until a node first holds it (mean)
  t_last    %.3f  (± %.3f)   %s until the last delivery
  latency   p50 %.3f  p90 %.3f  p99 %.3f  max %.3f %s
  converged %s
  messages  %.1f per node, %.0f bytes per node; %.1f per update, %.0f bytes per update (all kinds)
  false failure detections  %.1f (running members declared dead)
%s`,
		s.Nodes, s.Model, s.Mechanism, s.Direction, s.Interest, s.K, s.Fanout, s.Sampler, s.Loss*100, s.Runs, s.Seed,
		workload, extra, r.Updates,
		r.Residue, r.Spread["residue"], r.Traffic, r.Spread["traffic"],
		r.TAvg, r.Spread["t_avg"], r.Unit, r.TLast, r.Spread["t_last"], r.Unit,
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Unit, conv,
		r.MessagesPerNode, r.BytesPerNode, r.MessagesPerUpdate, r.BytesPerUpdate, r.FalseDetections, formed)
	return err
}

// WriteCSV writes every run's time series, one row per step (a cycle, or
// Cycle of virtual time): how many running nodes are susceptible (miss an
// update and spread none), infective (spread hot rumors) and removed (hold
// every update, spread none), in the SIR terms of Demers et al.; then the
// step's time in the report's unit, the running nodes, the (update, node)
// pairs not yet delivered, and the messages and bytes sent so far.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"run", "seed", "step", "susceptible", "infective", "removed", "time", "live", "missing", "messages", "bytes"}); err != nil {
		return err
	}
	for ri, run := range r.Runs {
		for i, sm := range run.series {
			rec := []string{strconv.Itoa(ri), strconv.FormatUint(run.Seed, 10), strconv.Itoa(i + 1),
				strconv.Itoa(sm.Susceptible), strconv.Itoa(sm.Infective), strconv.Itoa(sm.Removed),
				strconv.FormatFloat(sm.T, 'g', 6, 64), strconv.Itoa(sm.Live), strconv.Itoa(sm.Missing),
				strconv.FormatUint(sm.Messages, 10), strconv.FormatUint(sm.Bytes, 10)}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// ErrNoPlot is WritePlot's error in a build without plotting.
var ErrNoPlot = errors.New("sim: this hearsay was built without plotting (-tags noplot, as the agent image and make build are): write the data with --csv, or run the simulator from a default build (go run ./cmd/hearsay sim ... --plot FILE)")
