package agent

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/engine/trust"
)

// Flag names of peer scoring and quarantine (see Quarantine).
const (
	FlagQuarantine          = "quarantine"
	FlagQuarantineThreshold = "quarantine-threshold"
	FlagQuarantineHalfLife  = "quarantine-half-life"
)

// quarantineFileKeys are the config-file keys of the quarantine flags.
var quarantineFileKeys = []string{FlagQuarantine, FlagQuarantineThreshold, FlagQuarantineHalfLife}

func init() {
	// Kept apart from the list in config.go so the two merge cleanly.
	fileKeys = append(fileKeys, quarantineFileKeys...)
	slices.Sort(fileKeys)
}

// Quarantine configures how the node scores its peers and quarantines
// those that send what does not check out (engine.Config.Trust; see
// docs/ARCHITECTURE.md, "Peer scoring and quarantine").
type Quarantine struct {
	// Enabled quarantines peers whose penalty reaches Threshold, and
	// takes others' death claims as suspicions. Off, offences are still
	// counted (hearsay_offences_total).
	Enabled bool
	// Threshold is the penalty at which a peer is quarantined (released
	// below half of it); HalfLife is how long a penalty takes to halve.
	Threshold float64
	HalfLife  time.Duration
}

// DefaultQuarantine returns the defaults: on, threshold 100, half-life 1m.
func DefaultQuarantine() Quarantine {
	return Quarantine{Enabled: true, Threshold: trust.DefaultThreshold, HalfLife: trust.DefaultHalfLife}
}

// registerQuarantineFlags defines the quarantine flags.
func (c *Config) registerQuarantineFlags(fs *pflag.FlagSet) {
	q := &c.Quarantine
	fs.BoolVar(&q.Enabled, FlagQuarantine, q.Enabled, "score peers by the offences this node can check (invalid or future records, member floods, stalled exchanges, refuted accusations) and quarantine those beyond --quarantine-threshold; false keeps counting, quarantines nobody")
	fs.Float64Var(&q.Threshold, FlagQuarantineThreshold, q.Threshold, "penalty at which a peer is quarantined (released below half of it); an invalid record weighs 10, a second of member flood 50")
	fs.DurationVar(&q.HalfLife, FlagQuarantineHalfLife, q.HalfLife, "time a peer's penalty takes to halve: how fast a repaired peer comes back")
}

// validateQuarantine checks the quarantine flags.
func (c *Config) validateQuarantine() []error {
	var errs []error
	q := c.Quarantine
	if !(q.Threshold > 0) || math.IsInf(q.Threshold, 0) {
		errs = append(errs, fmt.Errorf("--%s %v: must be a positive number", FlagQuarantineThreshold, q.Threshold))
	}
	if q.HalfLife <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must be positive", FlagQuarantineHalfLife, q.HalfLife))
	}
	return errs
}

// applyQuarantine carries the quarantine flags into the node's
// configuration, after applyProtocol.
func applyQuarantine(nc *hearsay.Config, cfg Config) {
	t := &nc.Protocol.Trust
	t.Disabled = !cfg.Quarantine.Enabled
	t.Threshold = cfg.Quarantine.Threshold
	t.HalfLife = cfg.Quarantine.HalfLife
}
