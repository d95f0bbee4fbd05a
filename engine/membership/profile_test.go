package membership

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestProfiles(t *testing.T) {
	if DefaultConfig() != LANConfig() {
		t.Error("DefaultConfig is not LANConfig")
	}
	for _, name := range Profiles() {
		cfg, err := Profile(strings.ToUpper(name))
		if err != nil {
			t.Fatalf("Profile(%q): %v", name, err)
		}
		// Every profile must keep the probe timeout inside the period, with
		// room for the indirect probes, and suspect before it declares dead.
		if cfg.ProbeTimeout <= 0 || 2*cfg.ProbeTimeout > cfg.ProbeInterval*6/5 || cfg.SuspicionTimeout < cfg.ProbeInterval ||
			cfg.SuspicionMaxMult < 1 || cfg.SuspicionConfirmations < 1 || cfg.GossipNodes < 1 || cfg.ReapTimeout <= 0 {
			t.Errorf("profile %s: implausible config %+v", name, cfg)
		}
	}
	if lan, _ := Profile(""); lan != LANConfig() {
		t.Error(`Profile("") is not LANConfig`)
	}
	wan, local := WANConfig(), LocalConfig()
	if lan := LANConfig(); !(local.ProbeTimeout < lan.ProbeTimeout && lan.ProbeTimeout < wan.ProbeTimeout) ||
		!(lan.SuspicionTimeout < wan.SuspicionTimeout) {
		t.Errorf("profiles out of order: local %+v, lan %+v, wan %+v", local, lan, wan)
	}
	_, err := Profile("datacenter")
	if err == nil || !strings.Contains(err.Error(), `"datacenter"`) || !strings.Contains(err.Error(), "lan, wan, local") {
		t.Errorf("unknown profile: error %v should name it and the valid ones", err)
	}
}

// TestLANDetectsCrashWithinMemberlistBound: with the LAN profile, a crash
// confirmed by others is declared at the minimum suspicion timeout, no
// later than memberlist's LAN preset (4 · max(1, log10 n) · 1 s) at 16
// and 48 members.
func TestLANDetectsCrashWithinMemberlistBound(t *testing.T) {
	cfg := LANConfig()
	for _, n := range []int{16, 48} {
		lo := time.Duration(float64(cfg.SuspicionTimeout) * max(1, math.Log10(float64(n))))
		memberlist := time.Duration(4 * max(1, math.Log10(float64(n))) * float64(time.Second))
		if lo > memberlist {
			t.Errorf("n=%d: minimum suspicion timeout %v, memberlist's %v", n, lo, memberlist)
		}
		if got := suspicionTimeout(lo, lo*time.Duration(cfg.SuspicionMaxMult), cfg.SuspicionConfirmations, cfg.SuspicionConfirmations); got != lo {
			t.Errorf("n=%d: timeout after K confirmations %v, want the minimum %v", n, got, lo)
		}
	}
}
