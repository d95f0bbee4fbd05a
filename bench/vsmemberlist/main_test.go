package main

import (
	"testing"
	"time"
)

// TestSmall runs both measurements on small clusters, to catch a harness
// that no longer works with either library. It is not run by the root
// module's tests: run `go test .` here.
func TestSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters")
	}
	o := options{Systems: []string{"memberlist", "hearsay", "hearsay-rumor"}, Profile: "lan", BroadcastNodes: 4,
		Updates: 5, Interval: 10 * time.Millisecond, Deadline: 10 * time.Second, Settle: time.Second}
	for r := range 2 {
		for _, sys := range order(o, r) {
			d, err := measureDetection(sys, 4, 2, o)
			if err != nil {
				t.Fatal(err)
			}
			if d.FirstSuspect <= 0 || d.AllDead < d.FirstSuspect {
				t.Errorf("%s: implausible detection %+v", d.System, d)
			}
		}
	}
	for _, sys := range order(o, 0) {
		for _, size := range []int{64, 4096} {
			b, err := measureBroadcast(sys, o, make([]byte, size))
			if err != nil {
				t.Fatal(err)
			}
			if sys.Name() == "memberlist" && size == 4096 {
				if b.Unsendable == "" {
					t.Errorf("memberlist sent a %d-byte broadcast", size)
				}
				continue
			}
			if b.Completeness != 1 || b.PerPayloadByte <= 0 {
				t.Errorf("%s, %d B: %+v", b.System, size, b)
			}
			if _, counts := sys.(mechanismCounter); counts && b.PerMechanism["direct-mail"]+b.PerMechanism["rumor"] <= 0 {
				t.Errorf("%s, %d B: no replication bytes by mechanism: %v", b.System, size, b.PerMechanism)
			}
		}
	}
}
