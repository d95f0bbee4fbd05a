//go:build !noplot

package sim

// The plots need gonum/plot and its fonts (several MB of binary): a build
// with -tags noplot (the agent image, make build) leaves them out, and
// WritePlot then says so (plot_noplot.go).

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotSupported reports whether this build can draw plots (WritePlot).
const PlotSupported = true

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
