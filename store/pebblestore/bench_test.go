package pebblestore

import (
	"fmt"
	"testing"

	"github.com/hearsaydb/hearsay/store"
)

// benchRecords returns n records with 100-byte values, keys numbered from
// first, all at version hlc.
func benchRecords(first, n int, hlc uint64) []store.Record {
	value := make([]byte, 100)
	recs := make([]store.Record, n)
	for i := range recs {
		recs[i] = store.Record{
			Key:     fmt.Appendf(nil, "bench/%012d", first+i),
			Value:   value,
			Version: store.Version{HLC: hlc, Node: 1},
		}
	}
	return recs
}

func benchApply(b *testing.B, perApply int, opts Options) {
	s := mustOpen(b, b.TempDir(), opts)
	defer closeStore(b, s)
	b.ReportAllocs()
	b.SetBytes(int64(perApply * 100))
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		recs := benchRecords(i*perApply, perApply, uint64(i+1))
		if _, err := s.Apply(recs); err != nil {
			b.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i*perApply)/b.Elapsed().Seconds(), "records/s")
	// The process's CPU per record, pebble's background work included:
	// what a write costs whatever share of the cores the benchmark gets.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1e3/float64(i*perApply), "cpu-us/record")
	if !opts.NoSync {
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "syncs/s")
	}
}

// BenchmarkApplySync measures one record per Apply and one Sync each: the
// cost of committing writes one by one.
func BenchmarkApplySync(b *testing.B) { benchApply(b, 1, Options{}) }

// BenchmarkApplyBatchSync measures 64 records per Apply and one Sync each:
// group commit.
func BenchmarkApplyBatchSync(b *testing.B) { benchApply(b, 64, Options{}) }

// BenchmarkApplyBatchNoSync is BenchmarkApplyBatchSync with Options.NoSync:
// the CPU a batch of 64 writes costs the store, without the fsync.
func BenchmarkApplyBatchNoSync(b *testing.B) { benchApply(b, 64, Options{NoSync: true}) }

// BenchmarkApplyNoSync is BenchmarkApplySync with Options.NoSync: the cost
// of Apply without the fsync.
func BenchmarkApplyNoSync(b *testing.B) { benchApply(b, 1, Options{NoSync: true}) }

// BenchmarkApplyOverwrite measures Apply of records that lose to what is
// held: the read that every redelivered update costs.
func BenchmarkApplyOverwrite(b *testing.B) {
	s := mustOpen(b, b.TempDir(), Options{NoSync: true})
	defer closeStore(b, s)
	const n = 10_000
	if _, err := s.Apply(benchRecords(0, n, 2)); err != nil {
		b.Fatal(err)
	}
	old := benchRecords(0, n, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		changed, err := s.Apply(old[i%n : i%n+1])
		if err != nil || changed[0] {
			b.Fatal(changed, err)
		}
		i++
	}
}

// BenchmarkGet reads random keys of 100k records, some from sstables after
// a flush.
func BenchmarkGet(b *testing.B) {
	s := mustOpen(b, b.TempDir(), Options{NoSync: true})
	defer closeStore(b, s)
	const n = 100_000
	for i := 0; i < n; i += 1000 {
		if _, err := s.Apply(benchRecords(i, 1000, 1)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "bench/%012d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok, err := s.Get(keys[(i*7919)%n]); err != nil || !ok {
			b.Fatal(ok, err)
		}
		i++
	}
}

// BenchmarkScan measures Scan per record visited.
func BenchmarkScan(b *testing.B) {
	s := mustOpen(b, b.TempDir(), Options{NoSync: true})
	defer closeStore(b, s)
	const n = 10_000
	if _, err := s.Apply(benchRecords(0, n, 1)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		seen := 0
		if err := s.Scan([]byte("bench/"), nil, func(store.Record) bool { seen++; return true }); err != nil || seen != n {
			b.Fatal(seen, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
