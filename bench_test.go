package hearsay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/store/pebblestore"
)

func benchNode(b *testing.B, name, dir string, seeds ...string) *hearsay.Node {
	b.Helper()
	return benchNodeWith(b, nil, name, dir, seeds...)
}

// benchNodeWith is benchNode in a certificate cluster when id is not nil.
func benchNodeWith(b *testing.B, id *hearsay.Identity, name, dir string, seeds ...string) *hearsay.Node {
	b.Helper()
	cfg := hearsay.DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.BindAddr, cfg.Seeds = name, dir, "127.0.0.1:0", seeds
	cfg.Identity = id
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := hearsay.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close() })
	return n
}

// BenchmarkPutDurable measures durable Put throughput on one node with a
// data directory (fsync before acknowledging), with 1 and 64 writers, and
// beside it raw Pebble doing the same writes (store=pebble), so that the two
// can be compared in one run: the same key and value sizes, a database of
// its own in a temporary directory of the same kind, every write committed
// with pebble.Sync. One writer commits one key per batch and waits for its
// sync; 64 writers each commit their own batches with pebble.Sync, which
// Pebble's commit pipeline groups into shared fsyncs (its own group commit).
func BenchmarkPutDurable(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			b.Run("store=hearsay", func(b *testing.B) {
				benchPutDurable(b, benchNode(b, "bench", b.TempDir()), writers)
			})
			b.Run("store=pebble", func(b *testing.B) { benchPebblePut(b, writers) })
		})
	}
}

// benchPebblePut is benchPutDurable on a bare Pebble database opened with
// the options pebblestore gives it (pebblestore.Tune), one key per batch,
// each committed with pebble.Sync.
func benchPebblePut(b *testing.B, writers int) {
	opts := &pebble.Options{Logger: discardPebbleLog{}}
	pebblestore.Tune(opts)
	db, err := pebble.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			b.Error(err)
		}
	}()
	runWriters(b, writers, func(key, value []byte) error {
		batch := db.NewBatch()
		err := batch.Set(key, value, nil)
		if err == nil {
			err = batch.Commit(pebble.Sync)
		}
		_ = batch.Close()
		return err
	})
}

// discardPebbleLog silences Pebble's informational log in benchmarks.
type discardPebbleLog struct{}

func (discardPebbleLog) Infof(string, ...any)  {}
func (discardPebbleLog) Errorf(string, ...any) {}
func (discardPebbleLog) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// benchPutDurable writes b.N keys with 100-byte values to n from writers
// goroutines and reports puts/s.
func benchPutDurable(b *testing.B, n *hearsay.Node, writers int) {
	ctx := context.Background()
	runWriters(b, writers, func(key, value []byte) error {
		_, err := n.Put(ctx, key, value)
		return err
	})
}

// runWriters puts b.N keys with 100-byte values from writers goroutines
// and reports puts/s and the process's CPU time per put: what a put costs
// whatever the load on the machine (the rate depends on the share of the
// cores the benchmark gets).
func runWriters(b *testing.B, writers int, put func(key, value []byte) error) {
	value := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := put([]byte(fmt.Sprintf("key-%09d", i)), value); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/put")
}

// BenchmarkReplicationLatency writes at 1,000 writes/s on one node of a
// three-node loopback cluster (durable stores) and measures the time from
// Put acknowledged to the value visible on each of the two others, seen by
// a watcher there. It reports p50 and p99.
func BenchmarkReplicationLatency(b *testing.B) {
	benchReplicationLatency(b, func(name, dir string, seeds ...string) *hearsay.Node { return benchNode(b, name, dir, seeds...) })
}

// benchReplicationLatency is BenchmarkReplicationLatency over nodes that
// open opens.
func benchReplicationLatency(b *testing.B, open func(name, dir string, seeds ...string) *hearsay.Node) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n1 := open("n1", b.TempDir())
	n2 := open("n2", b.TempDir(), n1.Status().Address)
	n3 := open("n3", b.TempDir(), n1.Status().Address)
	deadline := time.Now().Add(10 * time.Second)
	for n1.Status().Alive < 3 || n2.Status().Alive < 3 || n3.Status().Alive < 3 {
		if time.Now().After(deadline) {
			b.Fatal("cluster did not form")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var mu sync.Mutex
	acked := map[string]time.Time{}
	var lat []time.Duration
	var wg sync.WaitGroup
	for _, n := range []*hearsay.Node{n2, n3} {
		ch, err := n.Watch(ctx, []byte("lat/"))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				seen := time.Now()
				mu.Lock()
				if t, ok := acked[string(ev.Key)]; ok {
					lat = append(lat, seen.Sub(t))
				} else {
					// Seen before the writer recorded its ack: the
					// replication beat the acknowledgement.
					lat = append(lat, 0)
				}
				mu.Unlock()
			}
		}()
	}
	value := make([]byte, 100)
	tick := time.NewTicker(time.Millisecond) // 1,000 writes/s
	defer tick.Stop()
	b.ResetTimer()
	for i := range b.N {
		<-tick.C
		key := fmt.Sprintf("lat/%09d", i)
		if _, err := n1.Put(ctx, []byte(key), value); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		acked[key] = time.Now()
		mu.Unlock()
	}
	want := 2 * b.N
	deadline = time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(lat)
		mu.Unlock()
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	if len(lat) < want {
		b.Fatalf("only %d of %d deliveries seen", len(lat), want)
	}
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.ReportMetric(p(1.0), "max-ms")
}
