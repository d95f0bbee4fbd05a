package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// mlSystem runs memberlist nodes with one of its presets, each behind a
// counting transport. Updates are broadcast the way memberlist's users
// (Serf, Consul) do: the writer queues them in a TransmitLimitedQueue that
// the Delegate's GetBroadcasts drains onto gossip and probe packets, and
// every node that receives an update for the first time queues it again,
// so that it spreads epidemically rather than only from the writer.
type mlSystem struct {
	profile string
	mu      sync.Mutex
	nodes   []*mlNode
	bytes   atomic.Uint64
	stopped []bool
	done    chan struct{}
}

type mlNode struct {
	sys   *mlSystem
	idx   int
	list  *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	obs   *observer
	seen  sync.Map // update id -> struct{}
}

func newMemberlist(profile string) *mlSystem { return &mlSystem{profile: profile} }

func (s *mlSystem) Name() string { return "memberlist" }

func (s *mlSystem) NodeName(i int) string { return fmt.Sprintf("m%02d", i) }

func (s *mlSystem) preset() *memberlist.Config {
	switch s.profile {
	case "wan":
		return memberlist.DefaultWANConfig()
	case "local":
		return memberlist.DefaultLocalConfig()
	}
	return memberlist.DefaultLANConfig()
}

func (s *mlSystem) Start(n int, obs *observer, timeout time.Duration) error {
	s.done = make(chan struct{})
	s.stopped = make([]bool, n)
	var seed string
	for i := range n {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			Logger:    log.New(io.Discard, "", 0),
		})
		if err != nil {
			return fmt.Errorf("memberlist node %d: transport: %w", i, err)
		}
		port := nt.GetAutoBindPort()
		nd := &mlNode{sys: s, idx: i, obs: obs}
		cfg := s.preset()
		// The queue's retransmit limit scales with the cluster size, n
		// once the cluster has formed.
		nd.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return n }, RetransmitMult: cfg.RetransmitMult}
		cfg.Name = s.NodeName(i)
		cfg.BindAddr, cfg.BindPort = "127.0.0.1", port
		cfg.AdvertiseAddr, cfg.AdvertisePort = "127.0.0.1", port
		cfg.Transport = &countingTransport{NetTransport: nt, sent: &s.bytes, done: s.done}
		cfg.LogOutput = &suspectLog{nd: nd}
		cfg.Delegate = nd
		cfg.Events = nd
		list, err := memberlist.Create(cfg)
		if err != nil {
			_ = nt.Shutdown()
			return fmt.Errorf("memberlist node %d: %w", i, err)
		}
		nd.list = list
		s.mu.Lock()
		s.nodes = append(s.nodes, nd)
		s.mu.Unlock()
		if i == 0 {
			seed = fmt.Sprintf("127.0.0.1:%d", port)
			continue
		}
		if _, err := list.Join([]string{seed}); err != nil {
			return fmt.Errorf("memberlist node %d: join %s: %w", i, seed, err)
		}
	}
	return waitUntil(timeout, func() bool {
		for _, nd := range s.nodes {
			if nd.list.NumMembers() != n {
				return false
			}
		}
		return true
	})
}

func (s *mlSystem) Kill(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped[i] {
		return nil
	}
	s.stopped[i] = true
	// Shutdown without Leave: the others see it stop answering.
	if err := s.nodes[i].list.Shutdown(); err != nil {
		return fmt.Errorf("memberlist: shutdown %s: %w", s.NodeName(i), err)
	}
	return nil
}

// mlHeader is the update id in front of each broadcast message.
const mlHeader = 4

func (s *mlSystem) CanBroadcast(size int) (bool, string) {
	// GetBroadcasts skips any message larger than the room left in a
	// packet: memberlist never sends it, and says nothing.
	limit := s.preset().UDPBufferSize
	if size+mlHeader > limit {
		return false, fmt.Sprintf("a %d-byte broadcast exceeds memberlist's packet (UDPBufferSize %d): TransmitLimitedQueue never sends it", size+mlHeader, limit)
	}
	return true, ""
}

func (s *mlSystem) Broadcast(id int, value []byte) error {
	msg := make([]byte, mlHeader+len(value))
	binary.BigEndian.PutUint32(msg, uint32(id))
	copy(msg[mlHeader:], value)
	nd := s.nodes[0]
	nd.seen.Store(id, struct{}{})
	nd.queue.QueueBroadcast(mlBroadcast(msg))
	return nil
}

func (s *mlSystem) BytesSent() uint64 { return s.bytes.Load() }

func (s *mlSystem) Close() {
	if s.done != nil {
		close(s.done)
	}
	var wg sync.WaitGroup
	for i, nd := range s.nodes {
		if s.stopped[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nd.list.Shutdown()
		}()
	}
	wg.Wait()
	s.nodes = nil
}

// mlBroadcast is one queued update; updates never invalidate each other.
type mlBroadcast []byte

func (b mlBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b mlBroadcast) Message() []byte                       { return b }
func (b mlBroadcast) Finished()                             {}

// Delegate.

func (nd *mlNode) NodeMeta(int) []byte { return nil }

func (nd *mlNode) NotifyMsg(b []byte) {
	if len(b) < mlHeader {
		return
	}
	id := int(binary.BigEndian.Uint32(b))
	if _, dup := nd.seen.LoadOrStore(id, struct{}{}); dup {
		return
	}
	if nd.obs.deliver != nil {
		nd.obs.deliver(nd.idx, id, time.Now())
	}
	// Pass it on, as Serf does with user events: the writer's queue alone
	// transmits each update only RetransmitMult·log(n+1) times.
	nd.queue.QueueBroadcast(mlBroadcast(append([]byte(nil), b...)))
}

func (nd *mlNode) GetBroadcasts(overhead, limit int) [][]byte {
	return nd.queue.GetBroadcasts(overhead, limit)
}

func (nd *mlNode) LocalState(bool) []byte            { return nil }
func (nd *mlNode) MergeRemoteState([]byte, bool)     {}
func (nd *mlNode) NotifyJoin(*memberlist.Node)       {}
func (nd *mlNode) NotifyUpdate(*memberlist.Node)     {}
func (nd *mlNode) NotifyLeave(node *memberlist.Node) { nd.leave(node.Name) }

// leave is NotifyLeave, which memberlist calls for a dead member as for a
// left one (state.go, deadNode).
func (nd *mlNode) leave(name string) {
	if nd.obs.dead != nil {
		nd.obs.dead(nd.idx, name, time.Now())
	}
}

// suspectLog reads memberlist's log for the line its probe writes when it
// suspects a member: memberlist has no event for suspicion, and a node's
// public view (Members) does not show it.
type suspectLog struct{ nd *mlNode }

const suspectPrefix = "[INFO] memberlist: Suspect "

func (l *suspectLog) Write(b []byte) (int, error) {
	now := time.Now()
	line := string(b)
	if i := strings.Index(line, suspectPrefix); i >= 0 && l.nd.obs.suspect != nil {
		name, _, _ := strings.Cut(line[i+len(suspectPrefix):], " ")
		l.nd.obs.suspect(l.nd.idx, name, now)
	}
	return len(b), nil
}

// countingTransport is memberlist's NetTransport with every byte sent
// counted: datagrams, and writes on streams in both directions (dialled
// and accepted).
type countingTransport struct {
	*memberlist.NetTransport
	sent     *atomic.Uint64
	done     chan struct{}
	initOnce sync.Once
	streams  chan net.Conn
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	ts, err := t.NetTransport.WriteTo(b, addr)
	if err == nil {
		t.sent.Add(uint64(len(b)))
	}
	return ts, err
}

func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, addr.Addr)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, sent: t.sent}, nil
}

func (t *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(addr.Addr, timeout)
}

func (t *countingTransport) StreamCh() <-chan net.Conn {
	t.initOnce.Do(func() {
		t.streams = make(chan net.Conn)
		in := t.NetTransport.StreamCh()
		go func() {
			for {
				select {
				case c := <-in:
					select {
					case t.streams <- &countingConn{Conn: c, sent: t.sent}:
					case <-t.done:
						_ = c.Close()
						return
					}
				case <-t.done:
					return
				}
			}
		}()
	})
	return t.streams
}

type countingConn struct {
	net.Conn
	sent *atomic.Uint64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(uint64(n))
	return n, err
}
