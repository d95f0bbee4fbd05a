package transport

import (
	"bytes"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

const waitTimeout = 10 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("TRANSPORT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newTransport starts a transport on loopback (unless cfg says otherwise)
// and closes it when the test ends.
func newTransport(t *testing.T, cfg Config) *Transport {
	t.Helper()
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func ping(seq uint64) *wire.Envelope {
	return &wire.Envelope{
		Cluster:  "test",
		From:     "sender",
		FromAddr: "127.0.0.1:1",
		Body:     &wire.Envelope_Ping{Ping: &wire.Ping{Seq: seq}},
	}
}

func mail(id uint64, valueSize int) *wire.Envelope {
	v := make([]byte, valueSize)
	rand.Read(v)
	return &wire.Envelope{
		Cluster: "test",
		From:    "sender",
		Body: &wire.Envelope_Mail{Mail: &wire.Mail{
			Id:      id,
			Records: []*wire.Record{{Key: []byte("k"), Value: v, Hlc: 7, Node: 1}},
		}},
	}
}

// recv waits for the next envelope on tr, failing the test after a deadline.
func recv(t *testing.T, tr *Transport) *Incoming {
	t.Helper()
	select {
	case in, ok := <-tr.Incoming():
		if !ok {
			t.Fatalf("incoming channel closed")
		}
		return in
	case <-time.After(waitTimeout):
		t.Fatalf("no envelope received within %v; stats %+v", waitTimeout, tr.Stats())
	}
	return nil
}

// expectOnlyMarker checks that the next envelope delivered is the ping
// marker, which the caller sent after frames that must not be delivered.
func expectOnlyMarker(t *testing.T, tr *Transport, marker uint64) {
	t.Helper()
	in := recv(t, tr)
	if got := in.Env.GetPing().GetSeq(); got != marker {
		t.Fatalf("received %v before marker %d", in.Env, marker)
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		// Poll without burning a CPU.
		<-time.After(time.Millisecond)
	}
}

// mustSend returns a checker of a Send result, used as
// mustSend(t)(tr.Send(addr, env)); it fails the test on error.
func mustSend(t *testing.T) func(int, error) int {
	t.Helper()
	return func(n int, err error) int {
		t.Helper()
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		return n
	}
}

// rawUDP sends raw bytes as one datagram to addr.
func rawUDP(t *testing.T, addr string, b []byte) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatalf("dial udp: %v", err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write udp: %v", err)
	}
}

func frame(t *testing.T, env *wire.Envelope) []byte {
	t.Helper()
	b, err := wire.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitClosed waits until the peer closes c (a read returns an error other
// than a timeout of our own deadline).
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	var buf [64]byte
	for {
		_, err := c.Read(buf[:])
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection not closed by the transport within %v", waitTimeout)
		}
		return
	}
}

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func equalValue(a, b *wire.Envelope) bool {
	ra, rb := a.GetMail().GetRecords(), b.GetMail().GetRecords()
	return len(ra) == 1 && len(rb) == 1 && bytes.Equal(ra[0].Value, rb[0].Value)
}
