package bench

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestAntiEntropySmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		diff int
		full bool
	}{{0, false}, {1, false}, {100, false}, {100, true}} {
		res, err := AntiEntropy(ctx, AntiEntropyOptions{Keys: 5000, Diff: tc.diff, ValueSize: 100, Full: tc.full, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Converged {
			t.Fatalf("%+v: stores differ after the exchange", res)
		}
		if tc.diff == 0 && !tc.full && (res.RoundTrips != 1 || res.BytesTotal >= 1024) {
			t.Fatalf("equal stores: %d round trips, %d bytes; want 1 and under 1 KiB", res.RoundTrips, res.BytesTotal)
		}
		if !tc.full && tc.diff > 0 && res.BytesTotal > 2*res.DiffRecordBytes+16<<10 {
			t.Fatalf("d=%d: %d bytes for %d bytes of differing records", tc.diff, res.BytesTotal, res.DiffRecordBytes)
		}
		t.Logf("%+v", res)
	}
}

// BenchmarkAntiEntropy runs the exchange of `hearsay bench antientropy`
// for N = 10^4 and 10^5 (10^6 takes minutes to load: use the command).
func BenchmarkAntiEntropy(b *testing.B) {
	for _, keys := range []int{10_000, 100_000} {
		for _, diff := range []int{0, 1, 100, 10_000} {
			for _, full := range []bool{false, true} {
				mode := map[bool]string{false: "digest", true: "full"}[full]
				b.Run(fmt.Sprintf("keys=%d/diff=%d/%s", keys, diff, mode), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						res, err := AntiEntropy(context.Background(), AntiEntropyOptions{Keys: keys, Diff: diff, ValueSize: 100, Full: full, Dir: b.TempDir()})
						if err != nil {
							b.Fatal(err)
						}
						b.ReportMetric(float64(res.BytesTotal), "bytes/exchange")
						b.ReportMetric(float64(res.RoundTrips), "round-trips")
						b.ReportMetric(res.Seconds*1e3, "exchange-ms")
					}
				})
			}
		}
	}
}
