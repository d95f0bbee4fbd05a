package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/engine/membership"
)

// hsSystem runs hearsay nodes (in-memory stores) with a membership profile
// and a mode: "hearsay" runs every mechanism at its default,
// "hearsay-rumor" switches direct mail off (rumor mongering and
// anti-entropy), "hearsay-plumtree" switches direct mail and rumors off
// and the broadcast tree on (with anti-entropy). An update is a Put on
// node 0, and a node has it when its Watch reports the key.
type hsSystem struct {
	profile string
	mode    string
	opts    options
	mu      sync.Mutex
	nodes   []*hearsay.Node
	regs    []*prometheus.Registry
	stopped []bool
	cancel  context.CancelFunc
}

func newHearsay(profile, mode string, o options) *hsSystem {
	return &hsSystem{profile: profile, mode: mode, opts: o}
}

func (s *hsSystem) Name() string { return s.mode }

func (s *hsSystem) NodeName(i int) string { return fmt.Sprintf("h%02d", i) }

// updateKey is the key of update id.
func updateKey(id int) []byte { return []byte("u/" + strconv.Itoa(id)) }

func (s *hsSystem) Start(n int, obs *observer, timeout time.Duration) error {
	mcfg, err := membership.Profile(s.profile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.stopped = make([]bool, n)
	var seed string
	for i := range n {
		cfg := hearsay.DefaultConfig()
		cfg.Name = s.NodeName(i)
		cfg.BindAddr = "127.0.0.1:0"
		cfg.Protocol.Membership = mcfg
		switch s.mode {
		case "hearsay-rumor":
			cfg.Protocol.DirectMail = false
		case "hearsay-plumtree":
			cfg.Protocol.DirectMail = false
			cfg.Protocol.RumorMongering = false
			cfg.Protocol.Plumtree = true
			cfg.Protocol.Tree.EagerWindow = s.opts.TreeEagerWindow
			if s.opts.TreeIHaveWindow > 0 {
				cfg.Protocol.Tree.IHaveWindow = s.opts.TreeIHaveWindow
			}
			cfg.Protocol.Tree.LazyFanout = s.opts.TreeLazyFanout
		}
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		reg := prometheus.NewRegistry()
		cfg.Registerer = reg
		if i > 0 {
			cfg.Seeds = []string{seed}
		}
		nd, err := hearsay.Open(cfg)
		if err != nil {
			return fmt.Errorf("hearsay node %d: %w", i, err)
		}
		s.mu.Lock()
		s.nodes = append(s.nodes, nd)
		s.regs = append(s.regs, reg)
		s.mu.Unlock()
		if i == 0 {
			seed = nd.Status().Address
		}
		events, err := nd.MemberEvents(ctx)
		if err != nil {
			return fmt.Errorf("hearsay node %d: member events: %w", i, err)
		}
		go func() {
			for ev := range events {
				switch ev.Kind {
				case hearsay.MemberSuspect:
					if obs.suspect != nil {
						obs.suspect(i, ev.Member.Name, ev.Time)
					}
				case hearsay.MemberDead:
					if obs.dead != nil {
						obs.dead(i, ev.Member.Name, ev.Time)
					}
				}
			}
		}()
		if i == 0 || obs.deliver == nil {
			continue
		}
		watch, err := nd.Watch(ctx, []byte("u/"))
		if err != nil {
			return fmt.Errorf("hearsay node %d: watch: %w", i, err)
		}
		go func() {
			for ev := range watch {
				now := time.Now()
				if id, err := strconv.Atoi(strings.TrimPrefix(string(ev.Key), "u/")); err == nil {
					obs.deliver(i, id, now)
				}
			}
		}()
	}
	return waitUntil(timeout, func() bool {
		for _, nd := range s.nodes {
			alive := 0
			for _, m := range nd.Members() {
				if m.State == hearsay.StateAlive {
					alive++
				}
			}
			if alive != n {
				return false
			}
		}
		return true
	})
}

func (s *hsSystem) Kill(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped[i] {
		return nil
	}
	s.stopped[i] = true
	// Close without Leave: the others see it stop answering.
	if err := s.nodes[i].Close(); err != nil {
		return fmt.Errorf("hearsay: close %s: %w", s.NodeName(i), err)
	}
	return nil
}

func (s *hsSystem) CanBroadcast(size int) (bool, string) {
	if size > hearsay.DefaultConfig().Protocol.MaxValueSize {
		return false, fmt.Sprintf("a %d-byte value exceeds MaxValueSize", size)
	}
	return true, ""
}

func (s *hsSystem) Broadcast(id int, value []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.nodes[0].Put(ctx, updateKey(id), value); err != nil {
		return fmt.Errorf("hearsay: put update %d: %w", id, err)
	}
	return nil
}

// BytesSent sums hearsay_transport_sent_bytes_total (frame bytes
// sent by UDP and TCP) over the running nodes.
func (s *hsSystem) BytesSent() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total float64
	for i, reg := range s.regs {
		if s.stopped[i] {
			continue
		}
		mfs, err := reg.Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			if mf.GetName() != "hearsay_transport_sent_bytes_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return uint64(total)
}

// BytesByMechanism sums Node.Traffic's bytes sent, by mechanism, over the
// running nodes.
func (s *hsSystem) BytesByMechanism() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]uint64{}
	for i, nd := range s.nodes {
		if s.stopped[i] {
			continue
		}
		for m, t := range nd.Traffic() {
			out[m] += t.SentBytes
		}
	}
	return out
}

func (s *hsSystem) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	var wg sync.WaitGroup
	for i, nd := range s.nodes {
		if s.stopped[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nd.Close()
		}()
	}
	wg.Wait()
	s.nodes, s.regs = nil, nil
}
