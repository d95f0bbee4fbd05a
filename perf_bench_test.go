package hearsay_test

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

var idleWindow = flag.Duration("idle.window", 10*time.Second, "how long BenchmarkIdleCPU measures an idle node")

// cpuTime returns the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleCPU measures the CPU an idle node uses, as a share of one
// core over -idle.window, right after 100,000 keys were written to it (so
// that 100,000 rumors are hot, and stay hot: a lone node has no peer to lose
// interest with), and on a fresh node with nothing written. Run it with
// -benchtime 1x: the window, not b.N, sets the length.
func BenchmarkIdleCPU(b *testing.B) {
	for _, keys := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			n := benchNode(b, "idle", b.TempDir())
			ctx := context.Background()
			value := make([]byte, 100)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(keys) {
							return
						}
						if _, err := n.Put(ctx, []byte(fmt.Sprintf("key-%09d", i)), value); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ResetTimer()
			var share float64
			for range b.N {
				c0, t0 := cpuTime(b), time.Now()
				time.Sleep(*idleWindow) // measuring an idle interval, not waiting for an event
				share = float64(cpuTime(b)-c0) / float64(time.Since(t0))
			}
			b.ReportMetric(100*share, "cpu-%")
		})
	}
}

// BenchmarkLargePut measures how long a 1 MiB Put takes to return on one
// node of a 16-node loopback cluster (in-memory stores, so the disk does not
// blur the send path) with each replication mechanism alone: none (the
// write alone), direct mail, rumor mongering. Anti-entropy is off. Each Put
// writes a new key, and the next one waits until every node holds it
// (mechanism none: a pause), so that each Put is measured on a quiet cluster.
func BenchmarkLargePut(b *testing.B) {
	for _, mech := range []string{"none", "directmail", "rumor"} {
		b.Run("mechanism="+mech, func(b *testing.B) {
			const n = 16
			nodes := make([]*hearsay.Node, n)
			for i := range nodes {
				cfg := hearsay.DefaultConfig()
				cfg.Name, cfg.BindAddr = fmt.Sprintf("n%d", i+1), "127.0.0.1:0"
				if i > 0 {
					cfg.Seeds = []string{nodes[0].Status().Address}
				}
				cfg.Protocol.DirectMail = mech == "directmail"
				cfg.Protocol.RumorMongering = mech == "rumor"
				cfg.Protocol.AntiEntropy = false
				cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
				nd, err := hearsay.Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = nd.Close() })
				nodes[i] = nd
			}
			deadline := time.Now().Add(30 * time.Second)
			for _, nd := range nodes {
				for nd.Status().Alive < n {
					if time.Now().After(deadline) {
						b.Fatal("cluster did not form")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			value := make([]byte, 1<<20)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				key := []byte(fmt.Sprintf("big-%06d", i))
				if _, err := nodes[0].Put(ctx, key, value); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				deadline := time.Now().Add(20 * time.Second)
				for _, nd := range nodes[1:] {
					for mech != "none" {
						if _, err := nd.Get(ctx, key); err == nil {
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("%s did not receive %s", nd.Status().Name, key)
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
				// The next Put starts on a quiet cluster: every direct
				// mail acknowledged (n1's outbox empty). Rumor fetches
				// have ended once every node holds the value.
				for nodes[0].Status().Outbox > 0 {
					if time.Now().After(deadline) {
						b.Fatalf("n1's outbox still holds %d records", nodes[0].Status().Outbox)
					}
					time.Sleep(time.Millisecond)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkSigning measures what signed records cost, side by side with
// unsigned ones in one run: durable Put throughput on one node (1 and 64
// writers, as BenchmarkPutDurable), replication latency in a three-node
// loopback cluster (as BenchmarkReplicationLatency), the bytes a signature
// adds to a record on the wire (100-byte value, in a Mail), and the raw
// cost of signing and verifying one record.
func BenchmarkSigning(b *testing.B) {
	ids := memoryIdentities(b, 1, "bench", "n1", "n2", "n3")
	modes := []struct {
		name string
		id   func(name string) *hearsay.Identity
	}{
		{"none", func(string) *hearsay.Identity { return nil }},
		{"ed25519", func(name string) *hearsay.Identity { return ids[name] }},
	}
	for _, writers := range []int{1, 64} {
		for _, m := range modes {
			b.Run(fmt.Sprintf("put/writers=%d/signing=%s", writers, m.name), func(b *testing.B) {
				benchPutDurable(b, benchNodeWith(b, m.id("bench"), "bench", b.TempDir()), writers)
			})
		}
	}
	for _, m := range modes {
		b.Run("replication/signing="+m.name, func(b *testing.B) {
			benchReplicationLatency(b, func(name, dir string, seeds ...string) *hearsay.Node {
				return benchNodeWith(b, m.id(name), name, dir, seeds...)
			})
		})
	}
	ca, err := certs.NewMemoryCA(1, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	nd, err := ca.Node("n1")
	if err != nil {
		b.Fatal(err)
	}
	signer := certs.NewIdentity(nd)
	rec := store.Record{Key: []byte("key-000000001"), Value: make([]byte, 100), Version: store.Version{HLC: uint64(time.Now().UnixMilli()) << 16, Node: signer.NodeID()}}
	signed := rec
	signed.Sig = signer.Sign(engine.SignedBytes(rec))
	b.Run("bytes", func(b *testing.B) {
		size := func(r store.Record) int {
			return proto.Size(&wire.Mail{Id: 1, Records: []*wire.Record{wire.FromStore(r)}})
		}
		for range b.N {
			_ = size(signed)
		}
		b.ReportMetric(float64(size(rec)), "unsigned-B")
		b.ReportMetric(float64(size(signed)), "signed-B")
		b.ReportMetric(float64(size(signed)-size(rec)), "added-B")
	})
	b.Run("sign", func(b *testing.B) {
		for range b.N {
			_ = signer.Sign(engine.SignedBytes(rec))
		}
	})
	b.Run("verify", func(b *testing.B) {
		pub := nd.Cert.PublicKey.(ed25519.PublicKey)
		for range b.N {
			if !ed25519.Verify(pub, engine.SignedBytes(signed), signed.Sig) {
				b.Fatal("signature does not verify")
			}
		}
	})
}
