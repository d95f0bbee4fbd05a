//go:build !noplot

package sim

import (
	"fmt"
	"image/color"
	"io"
	"os"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

var plotColors = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
}

// canvas is a drawing surface that can be written out as a file.
type canvas interface {
	vg.CanvasSizer
	io.WriterTo
}

func newCanvas(ext string, w, h vg.Length) (canvas, error) {
	switch ext {
	case "svg":
		return vgsvg.New(w, h), nil
	case "png":
		return vgimg.PngCanvas{Canvas: vgimg.New(w, h)}, nil
	}
	return nil, fmt.Errorf("sim: unsupported plot format %q", ext)
}

func saveCanvas(c canvas, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim: plot: %w", err)
	}
	_, werr := c.WriteTo(f)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("sim: write plot %s: %w", path, werr)
	}
	return nil
}
