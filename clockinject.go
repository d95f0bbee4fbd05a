//go:build faultinject

package hearsay

import (
	"os"
	"strings"
	"sync"
	"time"
)

// Clock fault injection for real-process tests, compiled only with the
// faultinject build tag: HEARSAY_FAULT_CLOCK_FILE names a file holding a
// duration ("1h", "-90s", "0s") by which the node's wall clock is off (its
// timers keep running on the monotonic clock, see wallSkew). The file is
// read again at most every 100 ms, so a test moves the clock while the node
// runs. A missing or unreadable file means no offset.
func init() {
	path := os.Getenv("HEARSAY_FAULT_CLOCK_FILE")
	if path == "" {
		return
	}
	var (
		mu     sync.Mutex
		readAt time.Time
		offset time.Duration
	)
	wallSkew = func() time.Duration {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if now.Sub(readAt) >= 100*time.Millisecond {
			readAt = now
			offset = 0
			if b, err := os.ReadFile(path); err == nil {
				if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
					offset = d
				}
			}
		}
		return offset
	}
}
