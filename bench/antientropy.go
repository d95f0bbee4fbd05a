// Package bench measures hearsay's protocol mechanisms on real stores and
// real connections, for `hearsay bench` and the Go benchmarks.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/internal/hlc"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/pebblestore"
)

// AntiEntropyOptions configure AntiEntropy.
type AntiEntropyOptions struct {
	// Keys is the number of records both stores hold (N).
	Keys int
	// Diff is the number of keys whose records differ (d): a quarter newer
	// on each side, a quarter present on one side only, on each side.
	Diff int
	// ValueSize is the size of every value, in bytes.
	ValueSize int
	// Full selects the full-exchange baseline instead of digests.
	Full bool
	// Dir is where the two stores are created (a temporary directory,
	// removed afterwards, when empty).
	Dir string
	// Logger receives pebble's logs; nil discards them.
	Logger *slog.Logger
}

// AntiEntropyResult is what one exchange cost. The JSON names are relied
// on by scripts.
type AntiEntropyResult struct {
	Mode      string `json:"mode"`
	Keys      int    `json:"keys"`
	Diff      int    `json:"diff"`
	ValueSize int    `json:"value_size"`
	// BytesTotal is every frame byte, both directions.
	BytesTotal       int64 `json:"bytes_total"`
	BytesToResponder int64 `json:"bytes_initiator_to_responder"`
	BytesToInitiator int64 `json:"bytes_responder_to_initiator"`
	MessagesTotal    int64 `json:"messages_total"`
	DiffRecordBytes  int64 `json:"diff_record_bytes"`
	DiffRecords      int   `json:"diff_records"`
	RoundTrips       int   `json:"round_trips"`
	// DiffItems is the size of the digests' difference: a key newer on one
	// side differs by two items (its version on each side), a key on one
	// side only by one. CellsSent is how many digest cells the initiator
	// sent, and CellsPerItem that over DiffItems (the rateless code needs
	// about 1.35).
	DiffItems         int     `json:"diff_items"`
	CellsSent         uint64  `json:"cells_sent"`
	CellsPerItem      float64 `json:"cells_per_item,omitempty"`
	Seconds           float64 `json:"seconds"`
	LoadSeconds       float64 `json:"load_seconds"`
	PeakRSSBytes      int64   `json:"peak_rss_bytes"`
	RecordsRepaired   uint64  `json:"records_repaired"`
	Converged         bool    `json:"converged"`
	PeakRSSIsExchange bool    `json:"peak_rss_is_exchange_only"`
}

// AntiEntropy loads two pebble stores on disk with Keys records that differ
// in Diff keys, then reconciles them push-pull in one exchange over a TCP
// connection on loopback, and reports the cost. Peak RSS is reset before
// the exchange where the kernel allows (Linux), so it covers the exchange
// rather than the loading.
func AntiEntropy(ctx context.Context, o AntiEntropyOptions) (AntiEntropyResult, error) {
	res := AntiEntropyResult{Mode: "digest", Keys: o.Keys, Diff: o.Diff, ValueSize: o.ValueSize}
	if o.Full {
		res.Mode = "full"
	}
	if o.Keys < 0 || o.Diff < 0 || o.Diff > o.Keys || o.ValueSize < 0 {
		return res, fmt.Errorf("bench: antientropy: need 0 <= diff (%d) <= keys (%d) and value size >= 0", o.Diff, o.Keys)
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "hearsay-bench-ae")
		if err != nil {
			return res, fmt.Errorf("bench: antientropy: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var stores [2]*pebblestore.Store
	for i, name := range []string{"a", "b"} {
		st, err := pebblestore.Open(filepath.Join(dir, name), pebblestore.Options{NoSync: true, Logger: logger})
		if err != nil {
			return res, fmt.Errorf("bench: antientropy: %w", err)
		}
		defer st.Close()
		stores[i] = st
	}
	start := time.Now()
	moved, n, err := load(stores[0], stores[1], o)
	if err != nil {
		return res, err
	}
	res.DiffRecordBytes, res.DiffRecords = moved, n
	res.LoadSeconds = time.Since(start).Seconds()

	rssReset := resetPeakRSS()
	ex, err := exchange(ctx, stores[0], stores[1], o.Full)
	if err != nil {
		return res, err
	}
	res.BytesToResponder, res.BytesToInitiator = ex.sent[0], ex.sent[1]
	res.BytesTotal = ex.sent[0] + ex.sent[1]
	res.MessagesTotal = ex.msgs
	res.RoundTrips = ex.rounds
	res.CellsSent = ex.cells
	for j := range o.Diff {
		res.DiffItems += 1 + btoi(j%4 < 2)
	}
	if res.DiffItems > 0 {
		res.CellsPerItem = float64(ex.cells) / float64(res.DiffItems)
	}
	res.Seconds = ex.elapsed.Seconds()
	res.RecordsRepaired = ex.repaired
	res.PeakRSSBytes = peakRSS()
	res.PeakRSSIsExchange = rssReset
	res.Converged = slices.Equal(stores[0].Digest().Snapshot(), stores[1].Digest().Snapshot())
	return res, nil
}

// load writes the records: keys 0..Keys-1 on both stores, then the
// differences spread evenly over the key space. It returns the encoded
// size and number of the records that must move.
func load(a, b store.Store, o AntiEntropyOptions) (int64, int, error) {
	base := hlc.Pack(uint64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()), 0)
	value := make([]byte, o.ValueSize)
	rng := rand.New(rand.NewPCG(uint64(o.Keys), uint64(o.Diff)))
	for i := range value {
		value[i] = byte(rng.Uint32())
	}
	key := func(i int) []byte { return fmt.Appendf(nil, "key%010d", i) }
	diff := map[int]int{} // key index -> j
	for j := range o.Diff {
		diff[int(int64(j)*int64(o.Keys)/int64(max(o.Diff, 1)))] = j
	}
	var moved int64
	batch := make([]store.Record, 0, 1024)
	flush := func(st store.Store) error {
		if _, err := st.Apply(batch); err != nil {
			return fmt.Errorf("bench: antientropy: load: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	for side, st := range []store.Store{a, b} {
		for i := range o.Keys {
			r := store.Record{Key: key(i), Value: value, Version: store.Version{HLC: base + uint64(i), Node: 1}}
			if j, ok := diff[i]; ok {
				// j%4: 0 newer on a, 1 newer on b, 2 only on a, 3 only on b.
				owner := j % 2
				switch {
				case j%4 >= 2 && side != owner:
					continue
				case side == owner:
					r.Version = store.Version{HLC: base + uint64(o.Keys+i), Node: 2}
					r.Value = bytes.Clone(value)
					r.Value[0]++
				}
				if side == owner {
					moved += int64(proto.Size(wire.FromStore(r)))
				}
			}
			batch = append(batch, r)
			if len(batch) == cap(batch) {
				if err := flush(st); err != nil {
					return 0, 0, err
				}
			}
		}
		if err := flush(st); err != nil {
			return 0, 0, err
		}
		if err := st.Sync(); err != nil {
			return 0, 0, fmt.Errorf("bench: antientropy: load: %w", err)
		}
	}
	return moved, len(diff), nil
}

type exchangeResult struct {
	sent     [2]int64 // initiator→responder, responder→initiator
	msgs     int64
	rounds   int
	elapsed  time.Duration
	repaired uint64
	cells    uint64
}

// side is one end of the exchange: a reconciler over a store, owned by one
// goroutine, talking over one TCP connection.
type side struct {
	name, peer string
	st         store.Store
	r          *antientropy.Reconciler
	out        []*wire.Envelope
	w          *bufio.Writer
	sent       int64
	msgs       int64
	// A round trip is counted each time this side, having sent, hears
	// back: the turns the exchange waits on the network for.
	waiting bool
	rounds  int
}

func newSide(name, peer string, st store.Store, full bool) (*side, error) {
	cfg := antientropy.DefaultConfig()
	cfg.Enabled = false // exchanges are started by hand; no sweeps
	cfg.FullExchange = full
	cfg.Timeout = time.Hour
	s := &side{name: name, peer: peer, st: st}
	send := func(_ string, env *wire.Envelope) bool {
		env.From = name
		s.out = append(s.out, env)
		return true
	}
	apply := antientropy.ApplyTo(st)
	merge := func(now time.Time, peer string, ws []*wire.Record) ([]store.Record, error) {
		changed, err := apply(now, peer, ws)
		if err != nil {
			return nil, err
		}
		return changed, st.Sync() // durable, as the runtime's group commit makes it
	}
	sample := func(*rand.Rand, int) []string { return []string{peer} }
	r, err := antientropy.New(name, cfg, st, rand.New(rand.NewPCG(1, uint64(len(name)))), time.Now(), sample, send, merge)
	if err != nil {
		return nil, fmt.Errorf("bench: antientropy: %w", err)
	}
	s.r = r
	return s, nil
}

// flush writes the queued messages and reports whether there were any.
func (s *side) flush() (bool, error) {
	if len(s.out) == 0 {
		return false, nil
	}
	for _, env := range s.out {
		frame, err := wire.Marshal(env)
		if err != nil {
			return false, fmt.Errorf("bench: antientropy: encode: %w", err)
		}
		if _, err := s.w.Write(frame); err != nil {
			return false, fmt.Errorf("bench: antientropy: send: %w", err)
		}
		s.sent += int64(len(frame))
		s.msgs++
	}
	s.out = s.out[:0]
	s.waiting = true
	return true, s.w.Flush()
}

// run steps the side with every frame read from conn until done reports
// true.
func (s *side) run(ctx context.Context, conn net.Conn, done func() bool) error {
	frames := make(chan *wire.Envelope, 64)
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(conn, 256<<10)
		for {
			env, err := wire.ReadFrame(r, 64<<20)
			if err != nil {
				readErr <- err
				close(frames)
				return
			}
			frames <- env
		}
	}()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case env, ok := <-frames:
			if !ok {
				return fmt.Errorf("bench: antientropy: %s: connection closed early: %w", s.name, <-readErr)
			}
			if s.waiting {
				s.rounds++
				s.waiting = false
			}
			if err := s.r.Step(time.Now(), s.peer, env); err != nil {
				return fmt.Errorf("bench: antientropy: %s: %w", s.name, err)
			}
			// Take whatever else has arrived before answering, as the
			// runtime's event loop batches its inputs.
		drain:
			for {
				select {
				case env, ok := <-frames:
					if !ok {
						break drain
					}
					if err := s.r.Step(time.Now(), s.peer, env); err != nil {
						return fmt.Errorf("bench: antientropy: %s: %w", s.name, err)
					}
				default:
					break drain
				}
			}
			if _, err := s.flush(); err != nil {
				return err
			}
		}
		if st := s.r.Stats(); st.Stalled+st.Errors+st.Busy+st.BadDigests > 0 {
			return fmt.Errorf("bench: antientropy: %s: exchange failed: %+v", s.name, st)
		}
	}
	return nil
}

// exchange runs one push-pull exchange from a (initiator) to b over TCP.
func exchange(ctx context.Context, a, b store.Store, full bool) (exchangeResult, error) {
	var res exchangeResult
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("bench: antientropy: %w", err)
	}
	defer ln.Close()
	ia, err := newSide("a", "b", a, full)
	if err != nil {
		return res, err
	}
	rb, err := newSide("b", "a", b, full)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	respErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			respErr <- err
			return
		}
		defer conn.Close()
		rb.w = bufio.NewWriterSize(conn, 256<<10)
		respErr <- rb.run(ctx, conn, func() bool { return rb.r.Stats().Served == 1 })
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return res, fmt.Errorf("bench: antientropy: %w", err)
	}
	defer conn.Close()
	ia.w = bufio.NewWriterSize(conn, 256<<10)

	begin := time.Now()
	if !ia.r.Start(begin, "b") {
		return res, errors.New("bench: antientropy: exchange not started")
	}
	if _, err := ia.flush(); err != nil {
		return res, err
	}
	if err := ia.run(ctx, conn, func() bool { return ia.r.Stats().Completed == 1 }); err != nil {
		return res, err
	}
	if err := <-respErr; err != nil {
		return res, fmt.Errorf("bench: antientropy: responder: %w", err)
	}
	res.elapsed = time.Since(begin)
	res.sent = [2]int64{ia.sent, rb.sent}
	res.msgs = ia.msgs + rb.msgs
	res.rounds = ia.rounds
	res.repaired = ia.r.Stats().Repaired + rb.r.Stats().Repaired
	res.cells = ia.r.Stats().CellsSent
	return res, nil
}

// resetPeakRSS resets the kernel's peak resident set size of this process
// (Linux: writing 5 to /proc/self/clear_refs) and reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the process's peak resident set size in bytes (VmHWM),
// or -1 where /proc is not available.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return -1
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
