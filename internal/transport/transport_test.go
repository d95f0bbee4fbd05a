package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

func TestUDPRoundTrip(t *testing.T) {
	a := newTransport(t, Config{})
	b := newTransport(t, Config{})

	n := mustSend(t)(a.Send(b.LocalAddr(), ping(42)))
	in := recv(t, b)
	if got := in.Env.GetPing().GetSeq(); got != 42 {
		t.Fatalf("seq = %d, want 42", got)
	}
	if in.Size != n {
		t.Errorf("Size = %d, Send returned %d", in.Size, n)
	}
	if in.From != a.LocalAddr() {
		t.Errorf("From = %q, want %q", in.From, a.LocalAddr())
	}
	if in.Env.Protocol != wire.ProtocolVersion {
		t.Errorf("Protocol = %d", in.Env.Protocol)
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.PacketsSent != 1 || sa.BytesSent != uint64(n) || sa.StreamFramesSent != 0 {
		t.Errorf("sender stats %+v", sa)
	}
	if sb.PacketsReceived != 1 || sb.BytesReceived != uint64(n) {
		t.Errorf("receiver stats %+v", sb)
	}

	// UDP and TCP share the port.
	udpPort := a.udp.LocalAddr().(*net.UDPAddr).Port
	if _, p, _ := net.SplitHostPort(a.LocalAddr()); p != strconv.Itoa(udpPort) {
		t.Errorf("tcp %s and udp port %d differ", a.LocalAddr(), udpPort)
	}
}

func TestLargeMessageGoesOverTCP(t *testing.T) {
	a := newTransport(t, Config{})
	b := newTransport(t, Config{})

	env := mail(1, 200<<10)
	n := mustSend(t)(a.Send(b.LocalAddr(), env))
	if n <= DefaultMaxPacket {
		t.Fatalf("frame of %d bytes", n)
	}
	in := recv(t, b)
	if !equalValue(in.Env, env) || in.Env.GetMail().GetId() != 1 {
		t.Fatalf("value corrupted in transit")
	}
	if in.Size != n {
		t.Errorf("Size = %d, want %d", in.Size, n)
	}
	// The writer counts after its write returns, which may be after the
	// receiver has the frame.
	waitFor(t, "sender stats", func() bool { return a.Stats().StreamFramesSent == 1 })
	sa, sb := a.Stats(), b.Stats()
	if sa.PacketsSent != 0 || sa.BytesSent != uint64(n) {
		t.Errorf("sender stats %+v", sa)
	}
	if sb.StreamFramesReceived != 1 || sb.PacketsReceived != 0 {
		t.Errorf("receiver stats %+v", sb)
	}

	// The connection is pooled: a second frame reuses it.
	mustSend(t)(a.Send(b.LocalAddr(), mail(2, 100<<10)))
	if in := recv(t, b); in.Env.GetMail().GetId() != 2 {
		t.Fatalf("second mail: %v", in.Env.GetMail().GetId())
	}
	a.mu.RLock()
	conns := len(a.conns)
	a.mu.RUnlock()
	if conns != 1 {
		t.Errorf("sender has %d connections, want 1", conns)
	}
}

func TestTCPOrdered(t *testing.T) {
	a := newTransport(t, Config{})
	b := newTransport(t, Config{})
	const count = 1000
	for i := range count {
		env := ping(uint64(i))
		if i%100 == 0 {
			env = mail(uint64(i), 10<<10) // mix in large frames
		}
		mustSend(t)(a.SendTCP(b.LocalAddr(), env))
	}
	for i := range count {
		in := recv(t, b)
		got := in.Env.GetPing().GetSeq()
		if m := in.Env.GetMail(); m != nil {
			got = m.GetId()
		}
		if got != uint64(i) {
			t.Fatalf("message %d has seq %d", i, got)
		}
	}
	waitFor(t, "sender stats", func() bool { return a.Stats().StreamFramesSent == count })
	if s := a.Stats(); s.Dropped != 0 {
		t.Errorf("sender stats %+v", s)
	}
}

func TestIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback on this machine")
	}
	a := newTransport(t, Config{BindAddr: "[::1]:0"})
	b := newTransport(t, Config{BindAddr: "[::1]:0"})
	if ap, err := netip.ParseAddrPort(b.LocalAddr()); err != nil || !ap.Addr().Is6() {
		t.Fatalf("LocalAddr %q is not IPv6", b.LocalAddr())
	}
	if b.AdvertiseAddr() != b.LocalAddr() {
		t.Errorf("advertise %q, bound %q", b.AdvertiseAddr(), b.LocalAddr())
	}
	mustSend(t)(a.Send(b.AdvertiseAddr(), ping(6)))
	if in := recv(t, b); in.Env.GetPing().GetSeq() != 6 {
		t.Fatalf("udp over IPv6: %v", in.Env)
	}
	big := mail(7, 100<<10)
	mustSend(t)(a.Send(b.AdvertiseAddr(), big))
	if in := recv(t, b); !equalValue(in.Env, big) {
		t.Fatalf("tcp over IPv6: value corrupted")
	}
}

func TestAdvertiseAddr(t *testing.T) {
	t.Run("explicit", func(t *testing.T) {
		tr := newTransport(t, Config{AdvertiseAddr: "node1.example:7946"})
		if tr.AdvertiseAddr() != "node1.example:7946" {
			t.Errorf("AdvertiseAddr = %q", tr.AdvertiseAddr())
		}
		if tr.LocalAddr() == tr.AdvertiseAddr() {
			t.Errorf("LocalAddr = AdvertiseAddr")
		}
	})
	t.Run("invalid", func(t *testing.T) {
		if _, err := New(Config{BindAddr: "127.0.0.1:0", AdvertiseAddr: "no-port"}); err == nil {
			t.Error("New accepted an advertise address without a port")
		}
	})
	t.Run("unspecified", func(t *testing.T) {
		a := newTransport(t, Config{BindAddr: "0.0.0.0:0"})
		b := newTransport(t, Config{BindAddr: "0.0.0.0:0"})
		ap, err := netip.ParseAddrPort(b.AdvertiseAddr())
		if err != nil {
			t.Fatalf("AdvertiseAddr %q: %v", b.AdvertiseAddr(), err)
		}
		if ap.Addr().IsUnspecified() || !ap.Addr().Is4() {
			t.Fatalf("AdvertiseAddr %q should be a usable IPv4 address", b.AdvertiseAddr())
		}
		_, port, _ := net.SplitHostPort(b.LocalAddr())
		if strconv.Itoa(int(ap.Port())) != port {
			t.Fatalf("advertise %q and bound %q ports differ", b.AdvertiseAddr(), b.LocalAddr())
		}
		mustSend(t)(a.Send(b.AdvertiseAddr(), ping(1)))
		if in := recv(t, b); in.Env.GetPing().GetSeq() != 1 {
			t.Fatalf("got %v", in.Env)
		}
		mustSend(t)(a.Send(b.AdvertiseAddr(), mail(2, 50<<10)))
		if in := recv(t, b); in.Env.GetMail().GetId() != 2 {
			t.Fatalf("got %v", in.Env)
		}
	})
	t.Run("unspecified IPv6", func(t *testing.T) {
		if !hasIPv6Loopback() {
			t.Skip("no IPv6 on this machine")
		}
		tr := newTransport(t, Config{BindAddr: "[::]:0"})
		ap, err := netip.ParseAddrPort(tr.AdvertiseAddr())
		if err != nil || ap.Addr().IsUnspecified() || !ap.Addr().Is6() {
			t.Fatalf("AdvertiseAddr %q should be a usable IPv6 address", tr.AdvertiseAddr())
		}
	})
}

func TestFixedPort(t *testing.T) {
	a := newTransport(t, Config{})
	// The same port again is refused, cleanly.
	if tr, err := New(Config{BindAddr: a.LocalAddr(), Logger: testLogger()}); err == nil {
		tr.Close()
		t.Fatalf("second bind on %s succeeded", a.LocalAddr())
	}
	// A fixed free port works for both protocols.
	addr := a.LocalAddr()
	a.Close()
	b := newTransport(t, Config{BindAddr: addr})
	if b.LocalAddr() != addr {
		t.Fatalf("bound %q, want %q", b.LocalAddr(), addr)
	}
}

func TestBadDatagrams(t *testing.T) {
	b := newTransport(t, Config{})
	addr := b.LocalAddr()

	good := frame(t, ping(1))
	wrongMagic := append([]byte(nil), good...)
	wrongMagic[0] = 'X'
	newHeader := append([]byte(nil), good...)
	newHeader[2] = wire.ProtocolVersion + 1
	newEnvelope := frame(t, &wire.Envelope{Protocol: wire.ProtocolVersion + 1, Body: &wire.Envelope_Ping{Ping: &wire.Ping{}}})
	badFlags := append([]byte(nil), good...)
	badFlags[3] = 0x80
	malformed := append([]byte(nil), good[:wire.HeaderSize]...)
	malformed = append(malformed, make([]byte, len(good)-wire.HeaderSize)...)
	for i := wire.HeaderSize; i < len(malformed); i++ {
		malformed[i] = 0xff
	}
	huge := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(huge[4:8], 1<<31)

	decodeBad := [][]byte{
		[]byte("garbage"),
		{},
		good[:3],                 // truncated header
		good[:len(good)-1],       // truncated payload
		append(good, 0),          // trailing byte
		wrongMagic,               //
		badFlags,                 //
		malformed,                //
		huge,                     // length beyond MaxFrame
		make([]byte, 1400),       // zeros
		[]byte("HS\x01\x00\xff"), // short header with valid start
	}
	for _, d := range decodeBad {
		rawUDP(t, addr, d)
	}
	rawUDP(t, addr, newHeader)
	rawUDP(t, addr, newEnvelope)
	// Plaintext to a node without a keyring is fine, but a sealed frame is not.
	kr, _ := NewKeyring(make([]byte, 16))
	sealed, err := kr.Seal(good)
	if err != nil {
		t.Fatal(err)
	}
	rawUDP(t, addr, sealed)

	waitFor(t, "bad datagrams counted", func() bool {
		s := b.Stats()
		return s.DecodeErrors == uint64(len(decodeBad)) && s.VersionErrors == 2 && s.AuthErrors == 1
	})
	// Still works, and none of the bad input was delivered.
	rawUDP(t, addr, frame(t, ping(99)))
	expectOnlyMarker(t, b, 99)
	if s := b.Stats(); s.PacketsReceived != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestBadStreams(t *testing.T) {
	b := newTransport(t, Config{MaxFrame: 1 << 20, IdleTimeout: 300 * time.Millisecond, FrameTimeout: 300 * time.Millisecond})
	addr := b.LocalAddr()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	good := frame(t, ping(1))

	// An oversized length header closes the connection.
	c := dial()
	huge := append([]byte(nil), good[:wire.HeaderSize]...)
	binary.BigEndian.PutUint32(huge[4:8], 1<<30)
	c.Write(good)
	expectOnlyMarker(t, b, 1)
	c.Write(huge)
	waitClosed(t, c)
	waitFor(t, "oversized frame counted", func() bool { return b.Stats().DecodeErrors == 1 })

	// Before a frame has authenticated the connection, a frame larger than
	// PreAuthMaxFrame (but within MaxFrame) closes it, counted apart.
	c = dial()
	preAuth := append([]byte(nil), good[:wire.HeaderSize]...)
	binary.BigEndian.PutUint32(preAuth[4:8], DefaultPreAuthFrame+1)
	c.Write(preAuth)
	waitClosed(t, c)
	waitFor(t, "large frame before authentication counted", func() bool { return b.Stats().PreAuthRefused == 1 })

	// A newer version header closes the connection, counted apart.
	c = dial()
	newer := append([]byte(nil), good...)
	newer[2] = wire.ProtocolVersion + 1
	c.Write(newer)
	waitClosed(t, c)
	waitFor(t, "version error counted", func() bool { return b.Stats().VersionErrors == 1 })

	// Wrong magic closes the connection.
	c = dial()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	waitClosed(t, c)
	waitFor(t, "bad magic counted", func() bool { return b.Stats().DecodeErrors == 2 })

	// A complete frame with a malformed body or a newer envelope is dropped
	// but the stream stays in step: the next frame on it is delivered.
	c = dial()
	malformed := append([]byte(nil), good...)
	for i := wire.HeaderSize; i < len(malformed); i++ {
		malformed[i] = 0xff
	}
	c.Write(malformed)
	c.Write(frame(t, &wire.Envelope{Protocol: wire.ProtocolVersion + 1}))
	c.Write(frame(t, ping(50)))
	expectOnlyMarker(t, b, 50)
	if s := b.Stats(); s.DecodeErrors != 3 || s.VersionErrors != 2 {
		t.Errorf("stats %+v", s)
	}

	// Half a frame then silence (slowloris): closed after the frame
	// timeout, counted as too slow.
	c = dial()
	c.Write(good[:wire.HeaderSize+1])
	waitClosed(t, c)
	waitFor(t, "half frame counted", func() bool { return b.Stats().FrameTimeouts == 1 })

	// A truncated frame followed by EOF.
	c = dial()
	c.Write(good[:5])
	c.(*net.TCPConn).CloseWrite()
	waitClosed(t, c)
	waitFor(t, "truncated frame counted", func() bool { return b.Stats().DecodeErrors == 4 })

	// An idle connection that sent nothing is closed without counting.
	c = dial()
	waitClosed(t, c)

	// The transport still works on both paths.
	a := newTransport(t, Config{})
	mustSend(t)(a.Send(addr, ping(60)))
	expectOnlyMarker(t, b, 60)
	big := mail(61, 300<<10)
	mustSend(t)(a.Send(addr, big))
	if in := recv(t, b); !equalValue(in.Env, big) {
		t.Fatal("large frame corrupted")
	}
	if s := b.Stats(); s.DecodeErrors != 4 || s.VersionErrors != 2 || s.AuthErrors != 0 || s.FrameTimeouts != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestOversize(t *testing.T) {
	a := newTransport(t, Config{MaxFrame: 4096})
	b := newTransport(t, Config{MaxFrame: 4096})
	if _, err := a.Send(b.LocalAddr(), mail(1, 8192)); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("Send of an oversized frame: %v, want ErrTooLarge", err)
	}
	// A peer with a larger limit sends a frame b refuses.
	c := newTransport(t, Config{})
	mustSend(t)(c.Send(b.LocalAddr(), mail(2, 8192)))
	waitFor(t, "oversized frame refused", func() bool { return b.Stats().DecodeErrors == 1 })
	mustSend(t)(a.Send(b.LocalAddr(), ping(3)))
	expectOnlyMarker(t, b, 3)
}

func TestIncomingFullDropsDatagrams(t *testing.T) {
	a := newTransport(t, Config{})
	b := newTransport(t, Config{IncomingBuffer: 2})
	waitFor(t, "datagram dropped for a full inbox", func() bool {
		mustSend(t)(a.Send(b.LocalAddr(), ping(1)))
		return b.Stats().InboxDropped > 0
	})
	// Draining the channel makes room again.
	for len(b.Incoming()) > 0 {
		<-b.Incoming()
	}
	mustSend(t)(a.Send(b.LocalAddr(), ping(2)))
	waitFor(t, "delivery after draining", func() bool {
		select {
		case in := <-b.Incoming():
			return in.Env.GetPing().GetSeq() == 2
		default:
			return false
		}
	})
}

func TestIncomingFullBlocksStreams(t *testing.T) {
	a := newTransport(t, Config{})
	b := newTransport(t, Config{IncomingBuffer: 2})
	const count = 50
	for i := range count {
		mustSend(t)(a.SendTCP(b.LocalAddr(), ping(uint64(i))))
	}
	waitFor(t, "inbox full", func() bool { return len(b.Incoming()) == 2 })
	for i := range count {
		if got := recv(t, b).Env.GetPing().GetSeq(); got != uint64(i) {
			t.Fatalf("message %d has seq %d", i, got)
		}
	}
	if s := b.Stats(); s.InboxDropped != 0 {
		t.Errorf("stream frames dropped: %+v", s)
	}
}

func TestUnreachable(t *testing.T) {
	// A port with nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	a := newTransport(t, Config{DialTimeout: 500 * time.Millisecond})
	const count = 20
	start := time.Now()
	for i := range count {
		mustSend(t)(a.Send(dead, mail(uint64(i), 10<<10)))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Send blocked for %v", d)
	}
	waitFor(t, "frames to an unreachable peer dropped", func() bool {
		return a.Stats().Dropped == count
	})
	if s := a.Stats(); s.DialFailures == 0 || s.StreamFramesSent != 0 {
		t.Errorf("stats %+v", s)
	}

	// A peer that comes up later is reached after the backoff.
	b := newTransport(t, Config{BindAddr: dead})
	waitFor(t, "redial after the peer came up", func() bool {
		mustSend(t)(a.SendTCP(dead, ping(5)))
		select {
		case in := <-b.Incoming():
			return in.Env.GetPing().GetSeq() == 5
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
}

func TestQueueFull(t *testing.T) {
	// A peer that accepts and never reads: the writer blocks and the queue
	// fills up.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	a := newTransport(t, Config{QueueFrames: 4, WriteTimeout: time.Minute})
	var full error
	waitFor(t, "queue full", func() bool {
		_, full = a.Send(l.Addr().String(), mail(1, 256<<10))
		return full != nil
	})
	if !errors.Is(full, ErrQueueFull) {
		t.Fatalf("Send: %v, want ErrQueueFull", full)
	}
	if a.Stats().Dropped == 0 {
		t.Error("queue-full drop not counted")
	}
	// Close unblocks the stuck writer.
	done := make(chan error)
	go func() { done <- a.Close() }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Close blocked by a stuck writer")
	}
}

func TestQueueBytesLimit(t *testing.T) {
	a := newTransport(t, Config{QueueBytes: 100 << 10})
	// A frame larger than the whole byte budget can never be queued.
	_, err := a.SendTCP("127.0.0.1:1", mail(1, 200<<10))
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("SendTCP: %v, want ErrQueueFull", err)
	}
}

func TestCloseIdempotentAndSendAfterClose(t *testing.T) {
	a := newTransport(t, Config{})
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Send("127.0.0.1:1", ping(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if _, err := a.SendTCP("127.0.0.1:1", ping(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("SendTCP after Close: %v", err)
	}
	if _, ok := <-a.Incoming(); ok {
		t.Error("Incoming not closed")
	}
}

func TestCloseWithTrafficInFlight(t *testing.T) {
	before := runtime.NumGoroutine()
	a := newTransport(t, Config{})
	b := newTransport(t, Config{})

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch g {
				case 0:
					_, err = a.Send(b.LocalAddr(), ping(uint64(i)))
				case 1:
					_, err = a.Send(b.LocalAddr(), mail(uint64(i), 64<<10))
				case 2:
					_, err = b.Send(a.LocalAddr(), mail(uint64(i), 8<<10))
				default:
					_, err = b.SendTCP(a.LocalAddr(), ping(uint64(i)))
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil && !errors.Is(err, ErrQueueFull) {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	// Consume a little of b's inbox, not all of it, so readers are blocked.
	for range 20 {
		recv(t, b)
	}
	waitFor(t, "traffic both ways", func() bool { return a.Stats().StreamFramesReceived > 0 })

	closed := make(chan struct{})
	go func() {
		a.Close()
		b.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return with traffic in flight")
	}
	close(stop)
	wg.Wait()
	for range b.Incoming() { // drains and ends: the channel is closed
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 3 {
		a, err := New(Config{BindAddr: "127.0.0.1:0", Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(Config{BindAddr: "127.0.0.1:0", Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		mustSend(t)(a.Send(b.LocalAddr(), ping(1)))
		mustSend(t)(a.Send(b.LocalAddr(), mail(2, 20<<10)))
		mustSend(t)(b.SendTCP(a.LocalAddr(), ping(3)))
		recv(t, b)
		recv(t, b)
		recv(t, a)
		a.Close()
		b.Close()
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func TestIdleWriterRetires(t *testing.T) {
	a := newTransport(t, Config{IdleTimeout: 200 * time.Millisecond})
	b := newTransport(t, Config{})
	mustSend(t)(a.SendTCP(b.LocalAddr(), ping(1)))
	recv(t, b)
	waitFor(t, "idle writer to retire", func() bool {
		a.mu.RLock()
		defer a.mu.RUnlock()
		return len(a.peers) == 0 && len(a.conns) == 0
	})
	// And a new one starts on demand.
	mustSend(t)(a.SendTCP(b.LocalAddr(), ping(2)))
	if in := recv(t, b); in.Env.GetPing().GetSeq() != 2 {
		t.Fatalf("got %v", in.Env)
	}
}

func TestRedialAfterPeerRestart(t *testing.T) {
	a := newTransport(t, Config{})
	b := newTransport(t, Config{})
	addr := b.LocalAddr()
	mustSend(t)(a.SendTCP(addr, ping(1)))
	recv(t, b)
	b.Close()

	// The pooled connection is now dead; the protocol's retries reach the
	// restarted peer.
	b2 := newTransport(t, Config{BindAddr: addr})
	waitFor(t, "delivery to the restarted peer", func() bool {
		mustSend(t)(a.SendTCP(addr, ping(2)))
		select {
		case in := <-b2.Incoming():
			return in.Env.GetPing().GetSeq() == 2
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
}

// One large body sent to several peers, each in an envelope of its own, is
// encoded once; each peer gets its own envelope with the body intact.
func TestSharedBodyEncodedOnce(t *testing.T) {
	a := newTransport(t, Config{})
	peers := []*Transport{newTransport(t, Config{}), newTransport(t, Config{}), newTransport(t, Config{})}
	body := mail(5, 300<<10).Body
	for i, p := range peers {
		env := &wire.Envelope{Cluster: "test", From: fmt.Sprintf("sender-%d", i), Body: body}
		mustSend(t)(a.Send(p.LocalAddr(), env))
	}
	for i, p := range peers {
		in := recv(t, p)
		if in.Env.From != fmt.Sprintf("sender-%d", i) || !equalValue(in.Env, &wire.Envelope{Body: body}) {
			t.Fatalf("peer %d got %q, or a corrupted body", i, in.Env.From)
		}
	}
	if s := a.Stats(); s.BodiesEncoded != 1 || s.BodiesShared != 2 {
		t.Fatalf("bodies encoded %d, shared %d; want 1 and 2", s.BodiesEncoded, s.BodiesShared)
	}
}
