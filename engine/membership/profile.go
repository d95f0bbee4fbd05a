package membership

import (
	"fmt"
	"strings"
	"time"
)

// Profile names, for Profile and the agent's --profile flag.
const (
	ProfileLAN   = "lan"
	ProfileWAN   = "wan"
	ProfileLocal = "local"
)

// Profiles lists the profile names Profile accepts, the default first.
func Profiles() []string { return []string{ProfileLAN, ProfileWAN, ProfileLocal} }

// Profile returns the configuration of the named profile: "lan" (the
// default, LANConfig), "wan" (WANConfig) or "local" (LocalConfig). The name
// is case-insensitive; an empty name is "lan".
func Profile(name string) (Config, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case ProfileLAN, "":
		return LANConfig(), nil
	case ProfileWAN:
		return WANConfig(), nil
	case ProfileLocal:
		return LocalConfig(), nil
	}
	return Config{}, fmt.Errorf("membership: unknown profile %q: want one of %s", name, strings.Join(Profiles(), ", "))
}

// The three profiles follow the presets of hashicorp/memberlist
// (DefaultLANConfig, DefaultWANConfig, DefaultLocalConfig), translated to
// this package's knobs. memberlist's suspicion timeout is
// SuspicionMult · max(1, log10 n) · ProbeInterval, from which it expects
// k = SuspicionMult − 2 confirmations; here SuspicionTimeout is the
// product SuspicionMult · ProbeInterval and SuspicionConfirmations is k, so
// that both scale with log10 n and shrink with confirmations alike.

// LANConfig suits a LAN (round trips well under a millisecond to a few
// milliseconds) of 3 to 1,000 members, and is DefaultConfig. A crashed
// member is suspected within 1 to 3 s and declared dead everywhere about
// 3 s later at up to 10 members, 5 s at 48, 6 s at 100 and 9 s at 1,000,
// when others confirm the suspicion (the usual case for a crash); a lone
// accuser waits ten times longer.
func LANConfig() Config {
	return Config{
		// One probe per second and a 500 ms wait for the direct ack, as
		// memberlist's LAN preset: 500 ms is far above a LAN round trip,
		// and leaves half the period for the indirect probes.
		ProbeInterval: time.Second,
		ProbeTimeout:  500 * time.Millisecond,
		// Three helpers for the indirect probe (memberlist and the SWIM
		// paper's experiments): one lost path no longer causes a suspicion.
		IndirectChecks: 3,
		// memberlist LAN: SuspicionMult 4 at a 1 s period, so 4 s, k = 2
		// confirmations, and a maximum of 6× the minimum. Ours is 3 s and
		// 10×, k = 2. Measured in simulation (20 members, 120 member-hours
		// at 20% loss, docs/PERFORMANCE.md), false deaths come from lone,
		// unconfirmed accusations that run to the maximum before the
		// refutation reaches the accuser, not from confirmed ones: the
		// longer maximum cuts them (0.15 per member-hour, against 0.33 with
		// 5 s, 4×, K = 3 and 0.23 with memberlist's 4 s, 6×), while a
		// crash, which every prober confirms, is declared at the shorter
		// minimum. A live suspect hears of its suspicion within a second or
		// two (probes carry it to the suspect, news is gossiped every
		// 200 ms), so 3 s is enough to refute; a node that restarts within
		// about 4 s comes back at a higher incarnation before it is
		// declared dead. A lone accuser waits 30 s at 10 members.
		SuspicionTimeout:       3 * time.Second,
		SuspicionMaxMult:       10,
		SuspicionConfirmations: 2,
		// Lifeguard's local health: a starved node stretches its probe
		// period up to 9×, as memberlist's AwarenessMaxMultiplier 8 does
		// (memberlist's multiplier tops at 8, ours at score 8 + 1).
		MaxLocalHealth: 8,
		// Each update piggybacked 4 · ceil(log10(n+1)) times, as memberlist.
		RetransmitMult: 4,
		// Keeps a probe with its piggybacked news within one 1,400-byte
		// datagram.
		MaxPiggyback: 8,
		// Pending news to 3 random members every 200 ms (memberlist LAN).
		GossipInterval: 200 * time.Millisecond,
		GossipNodes:    3,
		// Join retries start fast (a seed that is starting with us) and
		// back off to 10 s, so a cluster of many joiners does not hammer a
		// missing seed.
		JoinRetryMin: 200 * time.Millisecond,
		JoinRetryMax: 10 * time.Second,
		// A full member-list push-pull with a random member every 30 s
		// (memberlist LAN), stretched beyond 32 members; after a join,
		// every 250 ms (a few LAN round trips) until three in a row find
		// nothing new, at most 10 times: 300 nodes joining one seed at once
		// see each other within 1.4 s.
		PushPullInterval: 30 * time.Second,
		JoinSyncInterval: 250 * time.Millisecond,
		JoinSyncMax:      10,
		// A dead member is pinged with its death every 10 s: a partition of
		// a LAN usually heals within seconds to minutes.
		ReconnectInterval: 10 * time.Second,
		// Dead and left members are forgotten after an hour, long enough
		// for every member to have learned the death.
		ReapTimeout: time.Hour,
	}
}

// WANConfig suits members spread over data centres or the internet:
// round trips of tens to hundreds of milliseconds, more loss and longer
// hiccups. It probes five times less often, waits longer for acks and
// gives suspects far longer to refute (memberlist's DefaultWANConfig).
// A crash is declared dead after about 30 s to a minute.
func WANConfig() Config {
	c := LANConfig()
	// memberlist WAN: a 5 s period and a 3 s ack timeout, which covers
	// intercontinental round trips with retransmissions below.
	c.ProbeInterval = 5 * time.Second
	c.ProbeTimeout = 3 * time.Second
	// memberlist WAN: SuspicionMult 6 at a 5 s period, so 30 s,
	// k = 6 − 2 = 4 confirmations and a maximum of 6× (3 minutes at 10
	// members already; not tuned further).
	c.SuspicionTimeout = 30 * time.Second
	c.SuspicionMaxMult = 6
	c.SuspicionConfirmations = 4
	// Gossip less often, to one more member (memberlist WAN: 500 ms, 4).
	c.GossipInterval = 500 * time.Millisecond
	c.GossipNodes = 4
	c.JoinRetryMax = 30 * time.Second
	// memberlist WAN: push-pull every 60 s; the fast exchanges after a
	// join wait for a few WAN round trips.
	c.PushPullInterval = 60 * time.Second
	c.JoinSyncInterval = time.Second
	// A partition between sites lasts longer; reconnect attempts cost a
	// message each, so they are spaced out.
	c.ReconnectInterval = 30 * time.Second
	return c
}

// LocalConfig suits members on one host or a loopback network (tests,
// development): round trips in microseconds, no loss. It detects a crash
// in a few seconds (memberlist's DefaultLocalConfig).
func LocalConfig() Config {
	c := LANConfig()
	// memberlist Local: 1 s period, 200 ms ack timeout, one indirect
	// helper (loopback loses nothing, so one path is enough).
	c.ProbeTimeout = 200 * time.Millisecond
	c.IndirectChecks = 1
	// memberlist Local: SuspicionMult 3 at 1 s, so 3 s, k = 1 and a
	// maximum of 6×.
	c.SuspicionTimeout = 3 * time.Second
	c.SuspicionMaxMult = 6
	c.SuspicionConfirmations = 1
	// Fewer retransmissions and faster gossip (memberlist Local:
	// RetransmitMult 2, GossipInterval 100 ms).
	c.RetransmitMult = 2
	c.GossipInterval = 100 * time.Millisecond
	c.JoinRetryMax = 2 * time.Second
	c.ReconnectInterval = 5 * time.Second
	// memberlist Local: push-pull every 15 s.
	c.PushPullInterval = 15 * time.Second
	c.JoinSyncInterval = 100 * time.Millisecond
	return c
}
