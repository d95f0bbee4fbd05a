// Package hlc implements a hybrid logical clock (Kulkarni et al., "Logical
// Physical Clocks", 2014): timestamps that stay close to physical time yet
// never run backwards and always exceed every timestamp a node has seen.
//
// A timestamp packs physical milliseconds since the Unix epoch into the high
// 48 bits and a logical counter into the low 16, so that it compares as one
// uint64. The clock never reads the wall clock itself: the caller hands in
// the physical time, which keeps the protocol engine deterministic.
package hlc

import "time"

const logicalBits = 16
const logicalMask = 1<<logicalBits - 1

// Timestamp is a packed hybrid logical clock reading.
type Timestamp = uint64

// Pack builds a timestamp from physical milliseconds and a logical counter.
func Pack(ms uint64, logical uint16) Timestamp { return ms<<logicalBits | uint64(logical) }

// Physical returns the physical milliseconds of ts.
func Physical(ts Timestamp) uint64 { return ts >> logicalBits }

// Logical returns the logical counter of ts.
func Logical(ts Timestamp) uint16 { return uint16(ts & logicalMask) }

// Time returns the physical part of ts as a time.Time.
func Time(ts Timestamp) time.Time { return time.UnixMilli(int64(Physical(ts))) }

// Clock issues timestamps. The zero Clock is ready to use. It is not safe
// for concurrent use: the engine owns it.
type Clock struct {
	last Timestamp
}

func millis(now time.Time) uint64 {
	ms := now.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}

// Now returns a timestamp greater than every timestamp issued or observed
// so far, and at least the physical time now.
func (c *Clock) Now(now time.Time) Timestamp {
	pt := Pack(millis(now), 0)
	if pt > c.last {
		c.last = pt
	} else {
		// Same millisecond (or the wall clock went back): count logically.
		// If the counter overflows this carries into the millisecond field,
		// which only moves the clock a millisecond ahead.
		c.last++
	}
	return c.last
}

// Observe folds in a timestamp received from another node, so that the
// next timestamp this clock issues is greater than it.
func (c *Clock) Observe(ts Timestamp) {
	if ts > c.last {
		c.last = ts
	}
}

// Last returns the largest timestamp issued or observed.
func (c *Clock) Last() Timestamp { return c.last }
