package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Latency is a distribution of one-way message delays.
type Latency struct {
	// Dist is "constant", "uniform" or "lognormal".
	Dist string
	// Mean is the constant delay, or the median of the log-normal.
	Mean time.Duration
	// Min and Max bound the uniform distribution.
	Min, Max time.Duration
	// Sigma is the log-normal's shape (the standard deviation of the
	// underlying normal).
	Sigma float64
}

// ParseLatency parses a latency flag: "10ms" (constant),
// "uniform:1ms-20ms", or "lognormal:10ms,0.5" (median, sigma).
func ParseLatency(s string) (Latency, error) {
	dist, arg, ok := strings.Cut(s, ":")
	if !ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return Latency{}, fmt.Errorf("sim: --latency %q: want a duration, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA", s)
		}
		l := Latency{Dist: "constant", Mean: d}
		return l, l.validate()
	}
	bad := fmt.Errorf("sim: --latency %q: want a duration, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA", s)
	switch dist {
	case "constant":
		d, err := time.ParseDuration(arg)
		if err != nil {
			return Latency{}, bad
		}
		l := Latency{Dist: "constant", Mean: d}
		return l, l.validate()
	case "uniform":
		lo, hi, ok := strings.Cut(arg, "-")
		a, err1 := time.ParseDuration(lo)
		b, err2 := time.ParseDuration(hi)
		if !ok || err1 != nil || err2 != nil {
			return Latency{}, bad
		}
		l := Latency{Dist: "uniform", Min: a, Max: b, Mean: (a + b) / 2}
		return l, l.validate()
	case "lognormal":
		med, sig, ok := strings.Cut(arg, ",")
		m, err1 := time.ParseDuration(med)
		sg, err2 := strconv.ParseFloat(sig, 64)
		if !ok || err1 != nil || err2 != nil {
			return Latency{}, bad
		}
		l := Latency{Dist: "lognormal", Mean: m, Sigma: sg}
		return l, l.validate()
	}
	return Latency{}, bad
}

func (l Latency) validate() error {
	switch l.Dist {
	case "", "constant":
		if l.Mean < 0 {
			return fmt.Errorf("sim: negative latency %v", l.Mean)
		}
	case "uniform":
		if l.Min < 0 || l.Max < l.Min {
			return fmt.Errorf("sim: uniform latency needs 0 <= min <= max, got %v-%v", l.Min, l.Max)
		}
	case "lognormal":
		if l.Mean <= 0 || l.Sigma < 0 || math.IsNaN(l.Sigma) {
			return fmt.Errorf("sim: log-normal latency needs median > 0 and sigma >= 0, got %v,%v", l.Mean, l.Sigma)
		}
	default:
		return fmt.Errorf("sim: unknown latency distribution %q", l.Dist)
	}
	return nil
}

// draw returns one delay.
func (l Latency) draw(rng *rand.Rand) time.Duration {
	switch l.Dist {
	case "uniform":
		if l.Max == l.Min {
			return l.Min
		}
		return l.Min + time.Duration(rng.Int64N(int64(l.Max-l.Min)))
	case "lognormal":
		return time.Duration(float64(l.Mean) * math.Exp(l.Sigma*rng.NormFloat64()))
	}
	return l.Mean
}

// String formats l as ParseLatency reads it.
func (l Latency) String() string {
	switch l.Dist {
	case "uniform":
		return fmt.Sprintf("uniform:%v-%v", l.Min, l.Max)
	case "lognormal":
		return fmt.Sprintf("lognormal:%v,%v", l.Mean, l.Sigma)
	}
	return l.Mean.String()
}

// MarshalJSON writes l as its flag string.
func (l Latency) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON reads the flag string form.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseLatency(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}
