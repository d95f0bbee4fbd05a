package engine

import (
	"errors"
	"fmt"
	"time"
)

// Validate reports what in c would stop the engine from working, each
// problem naming the field: timers that must be positive (a zero interval
// would make the node spin), bounds that must be at least one, and pairs
// that must be ordered. Start from DefaultConfig: the zero Config is not
// valid.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	atLeast := func(name string, v, lo int) {
		if v < lo {
			errs = append(errs, fmt.Errorf("%s must be at least %d, got %d", name, lo, v))
		}
	}
	if c.Name == "" {
		errs = append(errs, errors.New("a Name is required"))
	}
	if c.NodeID == 0 {
		errs = append(errs, errors.New("a NodeID is required (non-zero)"))
	}
	if c.Signer != nil && c.Signer.NodeID() != c.NodeID {
		errs = append(errs, fmt.Errorf("NodeID %016x is not the id %016x the node certificate binds", c.NodeID, c.Signer.NodeID()))
	}
	if c.MaxCerts < 0 {
		errs = append(errs, fmt.Errorf("MaxCerts must not be negative, got %d", c.MaxCerts))
	}
	atLeast("MaxValueSize", c.MaxValueSize, 1)
	if c.MaxClockSkew < 0 || c.MaxClockOffset < 0 {
		errs = append(errs, fmt.Errorf("MaxClockSkew (%v) and MaxClockOffset (%v) must not be negative", c.MaxClockSkew, c.MaxClockOffset))
	}
	if c.DirectMailWindow < 0 || c.DirectMailWindow > time.Minute {
		errs = append(errs, fmt.Errorf("DirectMailWindow must be from 0 to 1m, got %v", c.DirectMailWindow))
	}
	if c.MaxClockOffset > 0 && c.MaxClockSkew < c.MaxClockOffset {
		errs = append(errs, fmt.Errorf("MaxClockSkew (%v) must be at least MaxClockOffset (%v)", c.MaxClockSkew, c.MaxClockOffset))
	}

	m := c.Membership
	positive("Membership.ProbeInterval", m.ProbeInterval)
	positive("Membership.ProbeTimeout", m.ProbeTimeout)
	if m.ProbeTimeout >= m.ProbeInterval && m.ProbeInterval > 0 {
		errs = append(errs, fmt.Errorf("Membership.ProbeTimeout (%v) must be shorter than ProbeInterval (%v)", m.ProbeTimeout, m.ProbeInterval))
	}
	positive("Membership.SuspicionTimeout", m.SuspicionTimeout)
	atLeast("Membership.RetransmitMult", m.RetransmitMult, 1)
	atLeast("Membership.MaxPiggyback", m.MaxPiggyback, 1)
	if m.GossipNodes > 0 {
		positive("Membership.GossipInterval", m.GossipInterval)
	}
	positive("Membership.JoinRetryMin", m.JoinRetryMin)
	if m.JoinRetryMax < m.JoinRetryMin {
		errs = append(errs, fmt.Errorf("Membership.JoinRetryMax (%v) must be at least JoinRetryMin (%v)", m.JoinRetryMax, m.JoinRetryMin))
	}
	if m.PushPullInterval > 0 && m.JoinSyncMax > 0 {
		positive("Membership.JoinSyncInterval", m.JoinSyncInterval)
	}

	if c.RumorMongering {
		r := c.Rumor
		positive("Rumor.Interval", r.Interval)
		atLeast("Rumor.Fanout", r.Fanout, 1)
		atLeast("Rumor.K", r.K, 1)
		positive("Rumor.FetchTimeout", r.FetchTimeout)
	}

	mail := c.Mail
	positive("Mail.AckTimeout", mail.AckTimeout)
	positive("Mail.RetryMin", mail.RetryMin)
	if mail.AckDelay < 0 || mail.AckDelay > mail.AckTimeout/2 {
		errs = append(errs, fmt.Errorf("Mail.AckDelay (%v) must be between 0 and half of AckTimeout (%v)", mail.AckDelay, mail.AckTimeout))
	}
	if mail.AckDelay > 0 && mail.MaxAckIDs < 1 {
		errs = append(errs, fmt.Errorf("Mail.MaxAckIDs (%d) must be at least 1 when AckDelay is set", mail.MaxAckIDs))
	}
	if mail.RetryMax < mail.RetryMin {
		errs = append(errs, fmt.Errorf("Mail.RetryMax (%v) must be at least RetryMin (%v)", mail.RetryMax, mail.RetryMin))
	}

	// Anti-entropy answers peers, sweeps tombstones and marks the node alive
	// even when it starts no exchange itself.
	a := c.AE
	if c.AntiEntropy {
		positive("AE.Interval", a.Interval)
	}
	positive("AE.Timeout", a.Timeout)
	positive("AE.TombstoneGrace", a.TombstoneGrace)
	positive("AE.SweepInterval", a.SweepInterval)
	positive("AE.AliveInterval", a.AliveInterval)
	atLeast("AE.SweepBatch", a.SweepBatch, 1)
	atLeast("AE.Window", a.Window, 1)
	atLeast("AE.ChunkBytes", a.ChunkBytes, 1)
	atLeast("AE.InitialCells", a.InitialCells, 1)
	atLeast("AE.MaxSessions", a.MaxSessions, 1)

	if err := c.Trust.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.RateLimits.Validate(); err != nil {
		errs = append(errs, err)
	}

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("engine: invalid config (start from engine.DefaultConfig): %w", errors.Join(errs...))
}
