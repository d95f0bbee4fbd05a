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
	_, err := fmt.Fprintf(w, `hearsay sim: %d nodes, %s model, %s (%s, %s, k=%d, fanout %d), %s sampler, loss %.2f%%, %d run(s) from seed %d

  residue   %.4f  (± %.4f)   fraction of nodes never reached
  traffic   %.3f  (± %.3f)   update-carrying messages per node
  t_avg     %.3f  (± %.3f)   %s until a node first holds the update (mean)
  t_last    %.3f  (± %.3f)   %s until the last node that gets it does
  messages  %.1f per node, %.0f bytes per node (all kinds)
`,
		s.Nodes, s.Model, s.Mechanism, s.Direction, s.Interest, s.K, s.Fanout, s.Sampler, s.Loss*100, s.Runs, s.Seed,
		r.Residue, r.Spread["residue"], r.Traffic, r.Spread["traffic"],
		r.TAvg, r.Spread["t_avg"], r.Unit, r.TLast, r.Spread["t_last"], r.Unit,
		r.MessagesPerNode, r.BytesPerNode)
	return err
}

// WriteCSV writes the first run's time series: for each cycle (or each
// Cycle of virtual time), how many nodes are susceptible (never received
// the update), infective (spreading it) and removed (received it, no longer
// spreading), in the SIR terms of Demers et al.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"run", "seed", "step", "susceptible", "infective", "removed"}); err != nil {
		return err
	}
	for ri, run := range r.Runs {
		for i, got := range run.Curve {
			inf := 0
			if i < len(run.Infective) {
				inf = run.Infective[i]
			}
			rec := []string{strconv.Itoa(ri), strconv.FormatUint(run.Seed, 10), strconv.Itoa(i + 1),
				strconv.Itoa(r.Scenario.Nodes - got), strconv.Itoa(inf), strconv.Itoa(max(got-inf, 0))}
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
	curve.X.Label.Text = "step (" + r.Unit + ")"
	curve.Y.Label.Text = "nodes"
	run := r.Runs[0]
	sus, inf, rem := make(plotter.XYs, len(run.Curve)), make(plotter.XYs, len(run.Curve)), make(plotter.XYs, len(run.Curve))
	for i, got := range run.Curve {
		x := float64(i + 1)
		in := 0
		if i < len(run.Infective) {
			in = run.Infective[i]
		}
		sus[i] = plotter.XY{X: x, Y: float64(r.Scenario.Nodes - got)}
		inf[i] = plotter.XY{X: x, Y: float64(in)}
		rem[i] = plotter.XY{X: x, Y: float64(max(got-in, 0))}
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
	cdf.X.Label.Text = "time to first receipt (" + r.Unit + ")"
	cdf.Y.Label.Text = "fraction of nodes reached"
	var ts []float64
	for _, run := range r.Runs {
		ts = append(ts, run.latencies...)
	}
	slices.Sort(ts)
	if len(ts) > 0 {
		n := float64(r.Scenario.Nodes-1) * float64(len(r.Runs))
		xy := make(plotter.XYs, len(ts))
		for i, t := range ts {
			xy[i] = plotter.XY{X: t, Y: float64(i+1) / n}
		}
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
