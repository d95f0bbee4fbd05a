package sim

import "testing"

// skipHeavyUnderRace skips a long, single-threaded simulation under the
// race detector, which slows the simulator about tenfold and can find no
// race in code that one goroutine runs. make test runs the package a
// second time without -race, where these tests run (they are never
// skipped there).
func skipHeavyUnderRace(t *testing.T) {
	t.Helper()
	if raceDetector {
		t.Skip("single-threaded simulation: run by make test's pass without -race")
	}
}

// SkipHeavyUnderRace is skipHeavyUnderRace for the package's external tests.
var SkipHeavyUnderRace = skipHeavyUnderRace
