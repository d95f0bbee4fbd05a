package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
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

// WritePlot draws the infection curve (susceptible, infective and removed
// per step, first run) and the delivery-latency CDF over all runs, side by
// side, as SVG or PNG by the file name's extension.
func WritePlot(path string, r *Report) error {
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	if ext != "svg" && ext != "png" {
		return fmt.Errorf("sim: --plot %s: want a .svg or .png file name", path)
	}
	if len(r.Runs) == 0 {
		return fmt.Errorf("sim: nothing to plot")
	}
	curve := plot.New()
	curve.Title.Text = fmt.Sprintf("%s, %d nodes: infection curve (seed %d)", r.Scenario.Mechanism, r.Scenario.Nodes, r.Runs[0].Seed)
	curve.X.Label.Text = "time (" + r.Unit + ")"
	curve.Y.Label.Text = "nodes"
	run := r.Runs[0]
	sus, inf, rem := make(plotter.XYs, len(run.series)), make(plotter.XYs, len(run.series)), make(plotter.XYs, len(run.series))
	for i, sm := range run.series {
		sus[i] = plotter.XY{X: sm.T, Y: float64(sm.Susceptible)}
		inf[i] = plotter.XY{X: sm.T, Y: float64(sm.Infective)}
		rem[i] = plotter.XY{X: sm.T, Y: float64(sm.Removed)}
	}
	for i, l := range []struct {
		name string
		xy   plotter.XYs
	}{{"susceptible", sus}, {"infective", inf}, {"removed", rem}} {
		line, err := plotter.NewLine(l.xy)
		if err != nil {
			return fmt.Errorf("sim: plot: %w", err)
		}
		line.Color = plotColors[i]
		line.Width = vg.Points(1.5)
		curve.Add(line)
		curve.Legend.Add(l.name, line)
	}
	curve.Legend.Top = true
	curve.Add(plotter.NewGrid())

	cdf := plot.New()
	cdf.Title.Text = "delivery latency CDF (all runs)"
	cdf.X.Label.Text = "delivery latency (" + r.Unit + ")"
	cdf.Y.Label.Text = "fraction of deliveries"
	// Every run's latencies, against the deliveries it wanted (made and
	// missing), so that the curve ends at 1 - residue.
	var ts []float64
	wanted := 0.0
	for _, run := range r.Runs {
		ts = append(ts, run.latencies...)
		wanted += run.wanted
	}
	slices.Sort(ts)
	if len(ts) > 0 && wanted > 0 {
		// Some thousands of points draw the curve as well as millions.
		const points = 2000
		stride := max(1, len(ts)/points)
		var xy plotter.XYs
		for i := 0; i < len(ts); i += stride {
			xy = append(xy, plotter.XY{X: ts[i], Y: float64(i+1) / wanted})
		}
		xy = append(xy, plotter.XY{X: ts[len(ts)-1], Y: float64(len(ts)) / wanted})
		line, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("sim: plot: %w", err)
		}
		line.Color = plotColors[0]
		line.Width = vg.Points(1.5)
		cdf.Add(line, plotter.NewGrid())
	}
	cdf.Y.Min, cdf.Y.Max = 0, 1

	const w, h = 12 * vg.Inch, 4.5 * vg.Inch
	img, err := newCanvas(ext, w, h)
	if err != nil {
		return err
	}
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 8, PadY: vg.Millimeter * 4, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{curve, cdf}}
	canvases := plot.Align(plots, tiles, dc)
	curve.Draw(canvases[0][0])
	cdf.Draw(canvases[0][1])
	return saveCanvas(img, path)
}
