package sim

import (
	"path/filepath"
	"testing"
)

// TestRegressionScenarios replays every scenario kept in
// testdata/regress: scenarios that exploration once found failing (written
// by hearsay sim --explore as sim-failure-SEED.yaml and its shrunk -min form)
// and that must keep passing every invariant after their fix.
func TestRegressionScenarios(t *testing.T) {
	skipHeavyUnderRace(t)
	files, err := filepath.Glob(filepath.Join("testdata", "regress", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no regression scenarios in testdata/regress")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			res, err := runExplored(s)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(res.hist) == 0 {
				t.Fatalf("%s: the scenario wrote nothing: it checks nothing", f)
			}
			t.Logf("%d writes (%d acknowledged), %.0f s virtual", len(res.hist), res.Acknowledged, res.virtual)
		})
	}
}
