//go:build noplot

package sim

// PlotSupported reports whether this build can draw plots (WritePlot).
const PlotSupported = false

// WritePlot would draw the plots; this build has no plotting code.
func WritePlot(path string, r *Report) error { return ErrNoPlot }
