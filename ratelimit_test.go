package hearsay_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/internal/wire"
)

// A flood of rumor pulls over the real transport is refused past the
// sender's burst, and both the refusals and the offence show in the
// node's metrics.
func TestRateLimitedRequestsInMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := openNodeWith(t, "n1", "", nil, func(c *hearsay.Config) { c.Registerer = reg })
	pull, err := wire.Marshal(&wire.Envelope{Cluster: "hearsay", From: "flooder", FromAddr: "127.0.0.1:9",
		Body: &wire.Envelope_RumorPull{RumorPull: &wire.RumorPull{}}})
	if err != nil {
		t.Fatal(err)
	}
	frames := make([][]byte, 50)
	for i := range frames {
		frames[i] = pull
	}
	// 50 pulls at a time, until one is refused: more than the burst of 40
	// arrive even if the socket drops some.
	waitFor(t, 20*time.Second, "a rumor pull refused for its rate", func() bool {
		if gathered(t, reg, "hearsay_rate_limited_messages_total", "rumor_pull") > 0 {
			return true
		}
		sendUDP(t, n.Status().Address, frames...)
		return false
	})
	if got := gathered(t, reg, "hearsay_offences_total", "rate_limit"); got < 1 {
		t.Fatalf("rate_limit offences %v, want at least 1", got)
	}
	for _, k := range []string{"ae_start", "fetch"} {
		if got := gathered(t, reg, "hearsay_rate_limited_messages_total", k); got != 0 {
			t.Fatalf("%s refused %v, want 0", k, got)
		}
	}
}
