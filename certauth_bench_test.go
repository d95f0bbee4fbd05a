package hearsay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"time"

	"github.com/hearsaydb/hearsay"
)

// BenchmarkGossipAuth measures the end-to-end cost of gossip
// authentication: 64 writers put 100-byte values on n1 of a two-node
// in-memory loopback cluster (no fsync: the CPU is what is measured), and
// the benchmark ends when n2 has applied every write. Run with -cpu 1 for
// messages per second on one core. Each write travels as one direct-mail
// datagram and its ack, so each put costs about two frames signed and two
// verified in the certs cases.
func BenchmarkGossipAuth(b *testing.B) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, mode := range []string{"none", "keyring", "certs", "certs+keyring"} {
		b.Run(mode, func(b *testing.B) {
			var ca string
			if mode == "certs" || mode == "certs+keyring" {
				ca = newCADir(b)
			}
			open := func(name string, seeds ...string) *hearsay.Node {
				cfg := hearsay.DefaultConfig()
				cfg.Name, cfg.BindAddr, cfg.Seeds, cfg.NoSync = name, "127.0.0.1:0", seeds, true
				cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
				if ca != "" {
					id, err := hearsay.LoadIdentity(certsFor(b, ca, name))
					if err != nil {
						b.Fatal(err)
					}
					cfg.Identity, cfg.Name = id, ""
				}
				if mode == "keyring" || mode == "certs+keyring" {
					cfg.SecretKey = key
				}
				n, err := hearsay.Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = n.Close() })
				return n
			}
			n1 := open("n1")
			n2 := open("n2", n1.Status().Address)
			deadline := time.Now().Add(10 * time.Second)
			for n1.Status().Alive < 2 || n2.Status().Alive < 2 {
				if time.Now().After(deadline) {
					b.Fatal("cluster did not form")
				}
				time.Sleep(10 * time.Millisecond) // polling interval
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := n2.Watch(ctx, []byte("k/"))
			if err != nil {
				b.Fatal(err)
			}
			value := make([]byte, 100)
			var next, clockRefused atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						for {
							_, err := n1.Put(ctx, []byte(fmt.Sprintf("k/%09d", i)), value)
							if err == nil {
								break
							}
							if !errors.Is(err, hearsay.ErrClockOffset) {
								b.Error(err)
								return
							}
							// Overload inflates probe round trips and with
							// them the clock offset's uncertainty: count
							// the refusals, and retry after a while.
							clockRefused.Add(1)
							time.Sleep(time.Millisecond)
						}
					}
				}()
			}
			seen := map[string]bool{}
			timeout := time.After(60 * time.Second)
			for seen != nil && len(seen) < b.N {
				select {
				case ev := <-ch:
					seen[string(ev.Key)] = true
				case <-timeout:
					b.Errorf("n2 saw %d of %d writes in 60 s", len(seen), b.N)
					seen = nil
				}
			}
			b.StopTimer()
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "replicated-puts/s")
			b.ReportMetric(float64(clockRefused.Load()), "clock-refusals")
		})
	}
}
