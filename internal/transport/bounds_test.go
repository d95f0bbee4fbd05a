package transport

import (
	"net"
	"testing"
	"time"
)

func TestConnectionCaps(t *testing.T) {
	b := newTransport(t, Config{MaxConns: 6, MaxConnsPerIP: 4, FrameTimeout: time.Minute})
	dial := func(local string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", b.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var conns []net.Conn
	for range 4 {
		conns = append(conns, dial("127.0.0.1"))
	}
	waitFor(t, "4 connections open", func() bool { return b.Stats().ConnsOpen == 4 })
	// A fifth from the same IP is closed at once.
	waitClosed(t, dial("127.0.0.1"))
	waitFor(t, "per-IP refusal counted", func() bool { return b.Stats().ConnsRejected == 1 })
	// Another IP gets the rest of the total, then no more.
	conns = append(conns, dial("127.0.0.2"), dial("127.0.0.2"))
	waitFor(t, "6 connections open", func() bool { return b.Stats().ConnsOpen == 6 })
	waitClosed(t, dial("127.0.0.3"))
	waitFor(t, "total refusal counted", func() bool { return b.Stats().ConnsRejected == 2 })
	// Closing one makes room again, and the transport still works.
	conns[0].Close()
	waitFor(t, "a connection released", func() bool { return b.Stats().ConnsOpen == 5 })
	a := newTransport(t, Config{})
	big := mail(7, 64<<10)
	mustSend(t)(a.SendTCP(b.LocalAddr(), big))
	if in := recv(t, b); !equalValue(in.Env, big) {
		t.Fatal("large frame corrupted")
	}
}

func TestUnauthenticatedConnectionsTimeOut(t *testing.T) {
	kr, err := NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	b := newTransport(t, Config{Keyring: kr, FrameTimeout: 200 * time.Millisecond})
	// Idle, and a valid but plaintext (so unauthenticated) header with a
	// trickle: both closed within the frame timeout.
	idle, err := net.Dial("tcp", b.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	waitClosed(t, idle)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle unauthenticated connection closed after %v", d)
	}
	waitFor(t, "timeout counted", func() bool { return b.Stats().FrameTimeouts == 1 })
	// A peer with the key sends a frame far above PreAuthMaxFrame on a
	// fresh connection: the hello authenticated it first.
	a := newTransport(t, Config{Keyring: kr})
	big := mail(9, 512<<10)
	mustSend(t)(a.SendTCP(b.LocalAddr(), big))
	if in := recv(t, b); !equalValue(in.Env, big) {
		t.Fatal("large frame corrupted")
	}
	if s := b.Stats(); s.PreAuthRefused != 0 || s.AuthErrors != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A stranger without the key announcing a large frame is cut off at the
	// header, before anything is buffered.
	c := newTransport(t, Config{})
	mustSend(t)(c.SendTCP(b.LocalAddr(), mail(10, 512<<10)))
	waitFor(t, "stranger's hello refused", func() bool { return b.Stats().AuthErrors >= 1 })
}
