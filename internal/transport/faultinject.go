//go:build faultinject

package transport

import (
	"os"
	"strconv"
)

// HEARSAY_FAULT_BAD_FRAMES=N, in a faultinject build, makes the node send
// every N-th frame (joins and their replies excepted) with a payload that
// does not decode, sealed and signed as usual: its peers must score it.
func init() {
	if n, err := strconv.ParseUint(os.Getenv("HEARSAY_FAULT_BAD_FRAMES"), 10, 64); err == nil && n > 0 {
		corruptEvery = n
	}
}
