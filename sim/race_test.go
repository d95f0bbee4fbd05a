//go:build race

package sim

// raceDetector: the race detector slows the simulator about tenfold.
const raceDetector = true
