// Package transport is the real network of a hearsay node: it sends and
// receives wire.Envelope frames over UDP and TCP on one host:port.
//
// # UDP and TCP
//
// Most gossip is small (pings, acks, membership updates, small writes), and
// for those one UDP datagram is the cheapest, lowest-latency path: no
// connection state, no head-of-line blocking, and a lost datagram is simply
// retried by the protocol above. Datagrams are at most MaxPacket bytes (1400
// bytes by default) so that they fit one Ethernet MTU and are never
// fragmented, since a single lost fragment loses the whole datagram and some
// networks drop fragments altogether. Anything larger (big values, join
// replies with the full member list, batched mail) goes over a pooled TCP
// connection to the destination, where size is bounded only by MaxFrame.
// SendTCP forces the stream path, which is ordered per destination.
//
// Both paths carry the same frame (see package wire). UDP and TCP listen on
// the same port, so a member's address names both.
//
// # Sending
//
// Send never blocks on the network. A datagram is written directly (a
// non-blocking operation for UDP). A stream frame is queued for the
// destination's writer goroutine, which dials lazily, reuses the connection
// and re-dials after errors. Dial and write failures drop the frame and are
// counted (Stats.Dropped); the gossip protocol retries by itself.
//
// # Receiving
//
// Incoming delivers every decoded envelope, from UDP and from every accepted
// TCP connection. The channel is buffered. When it is full the UDP reader
// drops the datagram (Stats.InboxDropped), so it never stalls, while a TCP
// reader waits for room, which pushes back on the sending peer through TCP
// flow control and keeps stream frames in order and undropped. The channel
// is closed by Close once every reader has stopped.
//
// Nothing a peer sends can crash the transport: bad magic, unknown protocol
// versions, truncated or oversized frames, malformed protobuf and failed
// authentication are logged (Warn at most once a second per kind, Debug
// otherwise) and counted. A TCP connection is closed after a header error or
// an oversized length, since the stream can no longer be trusted, and after
// IdleTimeout without a complete frame.
//
// # Bounds
//
// Everything an unauthenticated peer can make the transport hold is bounded
// (issue 11): accepted TCP connections, in all (MaxConns) and per source IP
// (MaxConnsPerIP), beyond which new ones are closed at once and counted
// (Stats.ConnsRejected); the frames of a connection until one of them has
// been authenticated (opened with the keyring, or decoded without one),
// which may be at most PreAuthMaxFrame bytes (a few KiB), so that a stranger
// cannot make the node buffer a large frame it will refuse anyway; the time
// to authenticate (FrameTimeout after accept) and to receive a frame once
// its header has arrived (FrameTimeout plus the frame at 256 KiB/s), which
// defeats slow half-frame senders; and the buffer of a frame, allocated as
// its bytes arrive and dropped once it is decoded, so idle connections hold
// no buffer. A writer opens each connection with a small hello frame (an
// anonymous empty envelope, never delivered) so that its first large frame
// is accepted.
//
// # Encryption
//
// With a Keyring every frame is sealed with AES-GCM (see Keyring.Seal), and a
// node with a keyring refuses plaintext frames, counting them as
// Stats.AuthErrors, just as a node without a keyring refuses sealed frames.
// All members of a cluster must therefore agree on whether encryption is on.
//
// A frame refused for failed authentication is answered with a refusal
// notice saying why (plaintext to a node with a key, encrypted to a node
// without one, or no key of the ring opens it), over UDP to the datagram's
// source and over TCP on the connection before it is closed. Notices are
// rate-limited, never larger than the datagram they answer and never
// answered; they arrive as an Incoming with Refusal set and Env nil. See
// refusal.go.
//
// # Certificates
//
// With a CertAuth (Config.Certs) every frame is signed with the node's
// certificate, and a received frame is accepted only if signed by a valid,
// unrevoked node certificate of the same CA whose name is the envelope's
// sender; the certificate travels with the first frames to a peer and is
// cached by the receiver. Refusals name the cause ("certificate revoked",
// "unknown certificate: attach it", ...). See certauth.go.
package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Defaults for Config.
const (
	DefaultMaxPacket      = 1400
	DefaultDialTimeout    = 2 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultIdleTimeout    = 2 * time.Minute
	DefaultIncomingBuffer = 4096
	DefaultQueueFrames    = 1024
	DefaultQueueBytes     = 64 << 20
	DefaultMaxConns       = 512
	DefaultMaxConnsPerIP  = 32
	DefaultPreAuthFrame   = 4 << 10
	DefaultFrameTimeout   = 10 * time.Second

	// minFrameRate is the slowest a frame may arrive once its header has:
	// a frame gets FrameTimeout plus its size at this rate.
	minFrameRate = 256 << 10
	// frameChunk is the most a frame's buffer grows ahead of its bytes.
	frameChunk = 64 << 10

	// maxDatagram is the largest UDP payload over IPv4.
	maxDatagram = 65507
	// bindAttempts bounds the retries when port 0 is asked for and the
	// port picked for TCP is taken for UDP.
	bindAttempts = 64
	// dial backoff after a failed dial to a peer.
	minDialBackoff = 50 * time.Millisecond
	maxDialBackoff = time.Second
)

// Errors returned by Send and SendTCP.
var (
	ErrClosed    = errors.New("transport: closed")
	ErrQueueFull = errors.New("transport: send queue full")
)

// Config configures a Transport. Zero values mean the defaults.
type Config struct {
	// BindAddr is the host:port to listen on, for UDP and TCP alike. Port 0
	// picks a free port that is free for both.
	BindAddr string
	// AdvertiseAddr is the address peers should dial. "" means the bound
	// address, with an unspecified host (0.0.0.0 or ::) replaced by a
	// usable local IP, or the loopback address if there is none.
	AdvertiseAddr string
	// MaxPacket is the largest frame sent as one UDP datagram; larger
	// frames go over TCP. Default 1400, at most 65507.
	MaxPacket int
	// MaxFrame is the largest accepted frame payload, in and out. Default
	// wire.DefaultMaxFrame.
	MaxFrame int
	// Keyring, if set, encrypts and authenticates every frame, and
	// plaintext frames are refused.
	Keyring *Keyring
	// Certs, if set, signs every frame with the node's certificate and
	// refuses frames not signed by a valid node certificate of the same CA
	// naming the envelope's sender (see CertAuth). With a Keyring too,
	// frames are sealed, then signed.
	Certs *CertAuth
	// DialTimeout bounds a TCP dial. Default 2s.
	DialTimeout time.Duration
	// WriteTimeout bounds the write of one frame on a TCP connection.
	// Default 10s.
	WriteTimeout time.Duration
	// IdleTimeout is how long an accepted TCP connection may go without
	// delivering a complete frame before it is closed. Outgoing connections
	// idle for half of it are closed too. Default 2 minutes.
	IdleTimeout time.Duration
	// IncomingBuffer is the capacity of the Incoming channel. Default 4096.
	IncomingBuffer int
	// ReportBuffer is the capacity of the BadFrames channel. Default
	// DefaultReportBuffer (256); reports beyond it are dropped and counted
	// (Stats.ReportsDropped).
	ReportBuffer int
	// QueueFrames and QueueBytes bound the stream queue of each
	// destination. Defaults 1024 frames and 64 MiB.
	QueueFrames int
	QueueBytes  int
	// MaxConns caps the accepted TCP connections open at once, and
	// MaxConnsPerIP those from one source IP; beyond them a new connection
	// is closed at once (Stats.ConnsRejected). A peer keeps at most one
	// connection to a node, so the defaults (512 and 32) leave room for
	// large clusters and for several nodes per host. Negative: no cap.
	MaxConns      int
	MaxConnsPerIP int
	// PreAuthMaxFrame is the largest frame accepted on a TCP connection
	// before a frame on it has been authenticated. Default 4 KiB.
	PreAuthMaxFrame int
	// FrameTimeout is how long an accepted connection has to deliver its
	// first authenticated frame, and the base time to receive any frame
	// once its header has arrived (plus the frame's size at 256 KiB/s).
	// Default 10 s.
	FrameTimeout time.Duration
	// Logger receives the transport's logs. Default slog.Default().
	Logger *slog.Logger
}

// Incoming is one envelope received from the network.
type Incoming struct {
	// From is the remote network address the frame came from. For TCP this
	// is the peer's ephemeral source port, not its listening address; reply
	// to Env.FromAddr.
	From string
	// Env is the decoded envelope; nil for a refusal.
	Env *wire.Envelope
	// Refusal, when not empty, is a refusal notice from the node at From:
	// it could not authenticate a frame this node sent it (no key, another
	// key, or a key where it has none), and says why. It is not
	// authenticated: use it to report, never to change state.
	Refusal string
	// Size is the frame's size on the wire in bytes.
	Size int
}

// Stats are the transport's counters since New.
type Stats struct {
	PacketsSent          uint64 // UDP datagrams sent
	PacketsReceived      uint64 // UDP datagrams decoded
	BytesSent            uint64 // frame bytes sent, UDP and TCP
	BytesReceived        uint64 // frame bytes received and decoded, UDP and TCP
	StreamFramesSent     uint64 // frames written to TCP connections
	StreamFramesReceived uint64 // frames decoded from TCP connections
	DecodeErrors         uint64 // bad magic, truncated, oversized or malformed frames
	VersionErrors        uint64 // frames from a newer or unknown protocol version
	AuthErrors           uint64 // frames that failed authentication (see Keyring)
	Dropped              uint64 // outgoing frames dropped: queue full, dial or write failure
	DialFailures         uint64 // failed TCP dials
	InboxDropped         uint64 // received datagrams dropped because Incoming was full
	RefusalsSent         uint64 // refusal notices sent in answer to frames that failed authentication
	RefusalsLimited      uint64 // refusal notices not sent: rate limit, or a datagram too small to answer
	RefusalsReceived     uint64 // refusal notices received
	ConnsOpen            uint64 // accepted TCP connections open now (a gauge)
	ConnsRejected        uint64 // accepted TCP connections closed at once: MaxConns or MaxConnsPerIP reached
	PreAuthRefused       uint64 // connections closed for a frame larger than PreAuthMaxFrame before authenticating
	FrameTimeouts        uint64 // connections closed for a frame, or the first authenticated one, too slow to arrive
	BodiesEncoded        uint64 // large bodies encoded (see Send)
	BodiesShared         uint64 // frames that reused the encoding of a body sent just before
	CertsVerified        uint64 // peer certificates verified against the CA (then cached)
	CertsCached          uint64 // verified peer certificates cached now (a gauge)
	CertsAttached        uint64 // frames sent with this node's certificate attached
	SessionFrames        uint64 // frames sent authenticated with a session key instead of a signature
	BadFramesReported    uint64 // refused frames proven to come from a peer, reported on BadFrames
	ReportsDropped       uint64 // such reports dropped because BadFrames was full
}

type counters struct {
	packetsSent, packetsReceived     atomic.Uint64
	bytesSent, bytesReceived         atomic.Uint64
	streamSent, streamReceived       atomic.Uint64
	decodeErrors, versionErrors      atomic.Uint64
	authErrors, dropped, dialFailure atomic.Uint64
	inboxDropped                     atomic.Uint64
	refusalsSent, refusalsLimited    atomic.Uint64
	refusalsReceived                 atomic.Uint64
	connsRejected, preAuthRefused    atomic.Uint64
	frameTimeouts                    atomic.Uint64
	bodiesEncoded, bodiesShared      atomic.Uint64
	certsAttached                    atomic.Uint64
	reported, reportsDropped         atomic.Uint64
	corrupted                        atomic.Uint64 // frames counted for corruptEvery
}

// Transport sends and receives envelopes over UDP and TCP. It is safe for
// concurrent use.
type Transport struct {
	cfg       Config
	log       *slog.Logger
	udp       *net.UDPConn
	tcp       *net.TCPListener
	local     string
	advertise string
	incoming  chan *Incoming
	reports   chan BadFrame
	done      chan struct{}
	dialCtx   context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	stats     counters
	warnAt    [warnKinds]atomic.Int64 // unix nanos of the last Warn per kind
	refusals  refusalLimiter
	// known are the destinations that hold this node's certificate
	// (Config.Certs): frames to them go without it.
	known knownPeers

	// shared is the encoding of the last large body sent, kept so that
	// the same body sent to several peers is encoded once (Send).
	sharedMu sync.Mutex
	shared   wire.SharedBody

	mu     sync.RWMutex
	closed bool
	peers  map[string]*peer
	conns  map[net.Conn]struct{}
	// accepted counts the open accepted connections, in all and per IP.
	accepted   int
	acceptedIP map[netip.Addr]int
}

// New binds the UDP and TCP listeners and starts the transport's goroutines.
func New(cfg Config) (*Transport, error) {
	if cfg.MaxPacket <= 0 {
		cfg.MaxPacket = DefaultMaxPacket
	}
	if cfg.MaxPacket > maxDatagram {
		cfg.MaxPacket = maxDatagram
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = wire.DefaultMaxFrame
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.IncomingBuffer <= 0 {
		cfg.IncomingBuffer = DefaultIncomingBuffer
	}
	if cfg.ReportBuffer <= 0 {
		cfg.ReportBuffer = DefaultReportBuffer
	}
	if cfg.QueueFrames <= 0 {
		cfg.QueueFrames = DefaultQueueFrames
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.PreAuthMaxFrame <= 0 {
		cfg.PreAuthMaxFrame = DefaultPreAuthFrame
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = DefaultFrameTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0:0"
	}
	if cfg.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("transport: advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
	}

	tcp, udp, err := bind(cfg.BindAddr)
	if err != nil {
		return nil, err
	}
	// A larger socket buffer absorbs bursts of gossip; best effort.
	_ = udp.SetReadBuffer(4 << 20)

	t := &Transport{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "transport"),
		udp:      udp,
		tcp:      tcp,
		local:    tcp.Addr().String(),
		incoming: make(chan *Incoming, cfg.IncomingBuffer),
		reports:  make(chan BadFrame, cfg.ReportBuffer),
		done:     make(chan struct{}),
		peers:    make(map[string]*peer),
		conns:    make(map[net.Conn]struct{}),

		acceptedIP: make(map[netip.Addr]int),
	}
	if _, err = t.encodeHello(); err != nil {
		tcp.Close()
		udp.Close()
		return nil, fmt.Errorf("transport: hello frame: %w", err)
	}
	t.dialCtx, t.cancel = context.WithCancel(context.Background())
	t.advertise = cfg.AdvertiseAddr
	if t.advertise == "" {
		t.advertise = advertiseFor(cfg.BindAddr, tcp.Addr().(*net.TCPAddr))
	}

	t.wg.Add(2)
	go t.readUDP()
	go t.accept()
	t.log.Debug("transport listening", "addr", t.local, "advertise", t.advertise,
		"encrypted", cfg.Keyring != nil, "signed", cfg.Certs != nil)
	return t, nil
}

// bind listens on addr for TCP, then for UDP on the same port. With port 0
// the port the kernel picked for TCP may be taken for UDP; then it tries
// again with another port.
func bind(addr string) (*net.TCPListener, *net.UDPConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: bind address %q: %w", addr, err)
	}
	attempts := 1
	if port == "0" || port == "" {
		attempts = bindAttempts
	}
	var lastErr error
	for range attempts {
		tl, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, nil, fmt.Errorf("transport: %w", err) // net's error names "listen tcp" and the address
		}
		tcp := tl.(*net.TCPListener)
		p := tcp.Addr().(*net.TCPAddr).Port
		uc, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(p)))
		if err == nil {
			return tcp, uc.(*net.UDPConn), nil
		}
		tcp.Close()
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, fmt.Errorf("transport: %w", lastErr) // net's error names "listen udp" and the address
}

// advertiseFor picks the address to advertise for a listener bound as bound.
// An unspecified host becomes a global unicast address of the family the
// bind address asked for, or that family's loopback address.
func advertiseFor(bindAddr string, bound *net.TCPAddr) string {
	port := bound.Port
	if !bound.IP.IsUnspecified() {
		return bound.String()
	}
	bindHost, _, _ := net.SplitHostPort(bindAddr)
	want6 := false
	if ip, err := netip.ParseAddr(bindHost); err == nil && ip.Is6() && !ip.Is4In6() {
		want6 = true
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if ip.Is6() != want6 || !ip.IsGlobalUnicast() {
				continue
			}
			return netip.AddrPortFrom(ip, uint16(port)).String()
		}
	}
	if want6 {
		return netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)).String()
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)).String()
}

// LocalAddr returns the bound host:port.
func (t *Transport) LocalAddr() string { return t.local }

// AdvertiseAddr returns the address peers should use to reach this node.
func (t *Transport) AdvertiseAddr() string { return t.advertise }

// Incoming returns the channel of received envelopes. See the package
// documentation for what happens when it is full; it is closed by Close.
func (t *Transport) Incoming() <-chan *Incoming { return t.incoming }

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	s := &t.stats
	st := Stats{
		PacketsSent:          s.packetsSent.Load(),
		PacketsReceived:      s.packetsReceived.Load(),
		BytesSent:            s.bytesSent.Load(),
		BytesReceived:        s.bytesReceived.Load(),
		StreamFramesSent:     s.streamSent.Load(),
		StreamFramesReceived: s.streamReceived.Load(),
		DecodeErrors:         s.decodeErrors.Load(),
		VersionErrors:        s.versionErrors.Load(),
		AuthErrors:           s.authErrors.Load(),
		Dropped:              s.dropped.Load(),
		DialFailures:         s.dialFailure.Load(),
		InboxDropped:         s.inboxDropped.Load(),
		RefusalsSent:         s.refusalsSent.Load(),
		RefusalsLimited:      s.refusalsLimited.Load(),
		RefusalsReceived:     s.refusalsReceived.Load(),
		ConnsOpen:            uint64(t.openAccepted()),
		ConnsRejected:        s.connsRejected.Load(),
		PreAuthRefused:       s.preAuthRefused.Load(),
		BodiesEncoded:        s.bodiesEncoded.Load(),
		BodiesShared:         s.bodiesShared.Load(),
		FrameTimeouts:        s.frameTimeouts.Load(),
		CertsAttached:        s.certsAttached.Load(),
		BadFramesReported:    s.reported.Load(),
		ReportsDropped:       s.reportsDropped.Load(),
	}
	if a := t.cfg.Certs; a != nil {
		st.CertsVerified = a.verified.Load()
		st.CertsCached = uint64(a.Cached())
		st.SessionFrames = a.macs.Load()
	}
	return st
}

func (t *Transport) openAccepted() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.accepted
}

// Close stops the listeners, closes every connection, discards queued
// frames and returns once all of the transport's goroutines have exited.
// Then it closes the Incoming channel. Close is idempotent.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.done)
		t.cancel()
		for c := range t.conns {
			c.Close()
		}
		t.mu.Unlock()
		err = errors.Join(t.tcp.Close(), t.udp.Close())
		t.wg.Wait()
		close(t.incoming)
		if err != nil {
			err = fmt.Errorf("transport: close: %w", err)
		}
	})
	return err
}

// Send encodes env and sends it to addr without blocking: as one UDP
// datagram if the frame fits in MaxPacket bytes, else queued for the
// destination's TCP connection. It returns the frame's size on the wire.
// It fails only if env cannot be encoded or exceeds MaxFrame, the transport
// is closed, or the destination's queue is full; a frame lost on the network
// is counted in Stats, not reported. addr should be an IP:port; a host name
// is resolved for every datagram, which may block on DNS. Send sets
// env.Protocol if it is zero, so an envelope must not be sent from two
// goroutines at once unless it is set.
//
// Envelopes that share a body (the same pointer in env.Body: one mail to
// every peer) share its encoding: Send keeps the encoding of the last body
// larger than a datagram and copies it into the frames of the envelopes
// that follow with that body, rather than encoding it again. So a body must
// not be changed once sent.
func (t *Transport) Send(addr string, env *wire.Envelope) (int, error) {
	frame, err := t.encode(addr, env, false)
	if err != nil {
		return 0, err
	}
	if len(frame) > t.cfg.MaxPacket {
		// Signed, it carries no certificate (see encode): the
		// connection's hello does.
		return t.enqueue(addr, frame)
	}
	if t.isClosed() {
		return 0, ErrClosed
	}
	t.sendDatagram(addr, frame)
	return len(frame), nil
}

// SendTCP is Send forced onto the stream path: frames sent with SendTCP to
// one destination arrive in order, unless some are dropped.
func (t *Transport) SendTCP(addr string, env *wire.Envelope) (int, error) {
	frame, err := t.encode(addr, env, true)
	if err != nil {
		return 0, err
	}
	return t.enqueue(addr, frame)
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// encode marshals env into a frame to addr, sealed if there is a keyring
// and signed if there are certificates. A signed frame carries the
// certificate when addr is not known to hold it, unless stream is set (a
// stream's hello carries it); a frame that would fit a datagram without
// the certificate and not with it is made as for a stream, so that Send
// sends it over TCP: datagrams stay within MaxPacket.
func (t *Transport) encode(addr string, env *wire.Envelope, stream bool) ([]byte, error) {
	if env == nil {
		return nil, fmt.Errorf("transport: encode: nil envelope")
	}
	frame, err := t.marshal(env)
	if err != nil {
		return nil, fmt.Errorf("transport: encode: %w", err)
	}
	if n := len(frame) - wire.HeaderSize; n > t.cfg.MaxFrame {
		return nil, fmt.Errorf("transport: encode: %w: %d bytes, limit %d", wire.ErrTooLarge, n, t.cfg.MaxFrame)
	}
	if corruptEvery > 0 && !attachesCert(env) && t.stats.corrupted.Add(1)%corruptEvery == 0 {
		frame = corruptFrame(frame)
	}
	if t.cfg.Keyring != nil {
		if frame, err = t.cfg.Keyring.Seal(frame); err != nil {
			return nil, fmt.Errorf("transport: encode: %w", err)
		}
	}
	if a := t.cfg.Certs; a != nil {
		if !attachesCert(env) && t.known.has(addr) {
			if mac, ok := a.macFrame(addr, frame); ok {
				return mac, nil
			}
		}
		attach := !stream && (attachesCert(env) || !t.known.has(addr))
		if attach && len(frame)+SignOverhead+2+len(a.cert.Raw) > t.cfg.MaxPacket {
			attach = false // too large for a datagram with it: goes over TCP
			if len(frame)+SignOverhead <= t.cfg.MaxPacket {
				// It would fit a datagram without the certificate:
				// make it larger than one, so that Send streams it.
				return t.encode(addr, env, true)
			}
		}
		if frame, err = a.Sign(frame, attach); err != nil {
			return nil, fmt.Errorf("transport: encode: %w", err)
		}
		if attach {
			t.stats.certsAttached.Add(1)
			t.known.sent(addr)
		}
	}
	return frame, nil
}

// encodeHello makes the frame that opens an outgoing connection: an
// anonymous empty envelope, with the certificate attached when frames are
// signed (and a fresh signing time, so it is made for each connection).
func (t *Transport) encodeHello() ([]byte, error) {
	frame, err := wire.Marshal(&wire.Envelope{})
	if err != nil {
		return nil, fmt.Errorf("transport: hello: %w", err)
	}
	if t.cfg.Keyring != nil {
		if frame, err = t.cfg.Keyring.Seal(frame); err != nil {
			return nil, fmt.Errorf("transport: hello: %w", err)
		}
	}
	if a := t.cfg.Certs; a != nil {
		if frame, err = a.Sign(frame, true); err != nil {
			return nil, fmt.Errorf("transport: hello: %w", err)
		}
	}
	return frame, nil
}

// marshal encodes env, reusing the encoding of its body if the last large
// body sent was the same (see Send).
func (t *Transport) marshal(env *wire.Envelope) ([]byte, error) {
	if env.Body == nil {
		return wire.Marshal(env)
	}
	t.sharedMu.Lock()
	shared := t.shared
	t.sharedMu.Unlock()
	if !shared.Carries(env) {
		if proto.Size(env) <= t.cfg.MaxPacket {
			return wire.Marshal(env)
		}
		var err error
		if shared, err = wire.EncodeBody(env); err != nil {
			return nil, err
		}
		t.sharedMu.Lock()
		t.shared = shared
		t.sharedMu.Unlock()
		t.stats.bodiesEncoded.Add(1)
	} else {
		t.stats.bodiesShared.Add(1)
	}
	return wire.MarshalShared(env, shared)
}

func (t *Transport) sendDatagram(addr string, frame []byte) {
	var (
		n   int
		err error
	)
	if ap, perr := netip.ParseAddrPort(addr); perr == nil {
		n, err = t.udp.WriteToUDPAddrPort(frame, ap)
	} else {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", addr); err == nil {
			n, err = t.udp.WriteToUDP(frame, ua)
		}
	}
	if err != nil {
		t.stats.dropped.Add(1)
		if !t.isClosed() {
			t.log.Debug("udp send failed", "to", addr, "err", err)
		}
		return
	}
	t.stats.packetsSent.Add(1)
	t.stats.bytesSent.Add(uint64(n))
}

// enqueue queues frame for addr's writer, starting the writer if needed.
func (t *Transport) enqueue(addr string, frame []byte) (int, error) {
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return 0, ErrClosed
	}
	p := t.peers[addr]
	if p == nil {
		t.mu.RUnlock()
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return 0, ErrClosed
		}
		if p = t.peers[addr]; p == nil {
			p = &peer{addr: addr, queue: make(chan []byte, t.cfg.QueueFrames)}
			t.peers[addr] = p
			t.wg.Add(1)
			go t.write(p)
		}
		t.mu.Unlock()
		t.mu.RLock()
		if t.closed {
			t.mu.RUnlock()
			return 0, ErrClosed
		}
		// The writer retires only under the write lock and with an empty
		// queue, so p is still the live peer if it is still in the map.
		if t.peers[addr] != p {
			t.mu.RUnlock()
			return t.enqueue(addr, frame)
		}
	}
	defer t.mu.RUnlock()
	if q := p.queued.Add(int64(len(frame))); q > int64(t.cfg.QueueBytes) {
		p.queued.Add(-int64(len(frame)))
		t.stats.dropped.Add(1)
		return 0, fmt.Errorf("transport: send to %s: %w: %d bytes queued", addr, ErrQueueFull, q-int64(len(frame)))
	}
	select {
	case p.queue <- frame:
		return len(frame), nil
	default:
		p.queued.Add(-int64(len(frame)))
		t.stats.dropped.Add(1)
		return 0, fmt.Errorf("transport: send to %s: %w: %d frames queued", addr, ErrQueueFull, len(p.queue))
	}
}

// peer is the stream path to one destination, owned by its writer goroutine.
type peer struct {
	addr   string
	queue  chan []byte
	queued atomic.Int64 // bytes in queue

	// Owned by the writer goroutine.
	conn      net.Conn
	used      bool // conn has carried a frame
	nextDial  time.Time
	dialDelay time.Duration
}

// write is the writer goroutine of p: it sends queued frames over one
// connection, dialing when there is none. After being idle for half the
// idle timeout it closes the connection and retires.
func (t *Transport) write(p *peer) {
	defer t.wg.Done()
	defer t.dropConn(p)
	idle := time.NewTimer(t.cfg.IdleTimeout / 2)
	defer idle.Stop()
	for {
		select {
		case <-t.done:
			return
		case frame := <-p.queue:
			p.queued.Add(-int64(len(frame)))
			t.writeFrame(p, frame)
			idle.Reset(t.cfg.IdleTimeout / 2)
		case <-idle.C:
			t.mu.Lock()
			if len(p.queue) == 0 {
				delete(t.peers, p.addr)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			idle.Reset(t.cfg.IdleTimeout / 2)
		}
	}
}

// writeFrame writes one frame to p, dialing if needed. A write failure on a
// connection that has already carried frames (probably closed by the peer
// while idle) is retried once on a fresh connection.
func (t *Transport) writeFrame(p *peer, frame []byte) {
	for {
		fresh := false
		if p.conn == nil {
			if !t.dial(p) {
				t.stats.dropped.Add(1)
				return
			}
			fresh = true
		}
		_ = p.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		n, err := p.conn.Write(frame)
		if err == nil {
			p.used = true
			t.stats.streamSent.Add(1)
			t.stats.bytesSent.Add(uint64(n))
			return
		}
		stale := p.used && !fresh
		t.dropConn(p)
		if t.isClosed() {
			return
		}
		if !stale {
			t.stats.dropped.Add(1)
			t.log.Debug("tcp write failed, frame dropped", "to", p.addr, "err", err)
			return
		}
		t.log.Debug("tcp write failed on reused connection, redialing", "to", p.addr, "err", err)
	}
}

// dial connects p, honouring the backoff after failed dials.
func (t *Transport) dial(p *peer) bool {
	if time.Now().Before(p.nextDial) {
		return false
	}
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	c, err := d.DialContext(t.dialCtx, "tcp", p.addr)
	if err != nil {
		if t.isClosed() {
			return false
		}
		t.stats.dialFailure.Add(1)
		p.dialDelay = min(max(2*p.dialDelay, minDialBackoff), maxDialBackoff)
		p.nextDial = time.Now().Add(p.dialDelay)
		t.log.Debug("tcp dial failed", "to", p.addr, "err", err, "retry_after", p.dialDelay)
		return false
	}
	if !t.track(c) {
		c.Close()
		return false
	}
	// Authenticate the connection with a small frame first, so that the
	// receiver accepts a first frame larger than its PreAuthMaxFrame.
	// Made anew for each connection: the keyring's primary key changes
	// when the cluster rotates its keys, and a signed hello carries a
	// fresh signing time.
	hello, err := t.encodeHello()
	if err != nil {
		t.untrack(c)
		c.Close()
		t.log.Warn("tcp hello not encoded", "to", p.addr, "err", err)
		return false
	}
	if t.cfg.Certs != nil {
		t.known.sent(p.addr)
	}
	_ = c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	if _, err := c.Write(hello); err != nil {
		t.untrack(c)
		c.Close()
		t.stats.dialFailure.Add(1)
		t.log.Debug("tcp hello failed", "to", p.addr, "err", err)
		return false
	}
	p.conn, p.used, p.dialDelay = c, false, 0
	t.wg.Add(1)
	go t.readRefusals(p.addr, c)
	return true
}

func (t *Transport) dropConn(p *peer) {
	if p.conn != nil {
		t.untrack(p.conn)
		p.conn.Close()
		p.conn = nil
	}
}

// track registers c to be closed by Close; false if already closed.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// readUDP is the UDP reader goroutine.
func (t *Transport) readUDP() {
	defer t.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Debug("udp read failed", "err", err)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		raw := bytes.Clone(buf[:n])
		if isRefusal(raw) {
			t.receiveRefusal("udp", from.String(), raw)
			continue
		}
		env, pr, err := t.decodeProven(raw)
		if err != nil {
			t.badInput("udp", from.String(), n, err, false)
			t.report("udp", from.String(), pr, err)
			if reason := refusalReason(err); reason != "" {
				t.refuseDatagram(from, n, reason)
			}
			continue
		}
		t.stats.packetsReceived.Add(1)
		t.stats.bytesReceived.Add(uint64(n))
		select {
		case t.incoming <- &Incoming{From: from.String(), Env: env, Size: n}:
		default:
			t.stats.inboxDropped.Add(1)
			t.warn(warnInbox, "incoming queue full, datagram dropped", "from", from.String())
		}
	}
}

// accept is the TCP accept goroutine.
func (t *Transport) accept() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.Accept()
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Probably out of file descriptors: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.warn(warnAccept, "tcp accept failed", "err", err, "retry_after", delay)
			select {
			case <-t.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		ip := remoteIP(c)
		switch ok, why := t.admit(c, ip); {
		case t.isClosed():
			c.Close()
			return
		case !ok:
			c.Close()
			t.stats.connsRejected.Add(1)
			t.warn(warnConns, "tcp connection refused", "from", c.RemoteAddr().String(), "reason", why)
			continue
		}
		t.wg.Add(1)
		go t.readConn(c, ip)
	}
}

// remoteIP returns the source IP of an accepted connection.
func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// admit tracks an accepted connection if the caps allow it; otherwise it
// says which cap refused it.
func (t *Transport) admit(c net.Conn, ip netip.Addr) (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return false, "closed"
	case t.cfg.MaxConns > 0 && t.accepted >= t.cfg.MaxConns:
		return false, fmt.Sprintf("%d connections open, the limit (--max-gossip-conns)", t.accepted)
	case t.cfg.MaxConnsPerIP > 0 && t.acceptedIP[ip] >= t.cfg.MaxConnsPerIP:
		return false, fmt.Sprintf("%d connections open from %s, the limit (--max-gossip-conns-per-ip)", t.acceptedIP[ip], ip)
	}
	t.conns[c] = struct{}{}
	t.accepted++
	t.acceptedIP[ip]++
	return true, ""
}

// release forgets an accepted connection.
func (t *Transport) release(c net.Conn, ip netip.Addr) {
	t.mu.Lock()
	delete(t.conns, c)
	t.accepted--
	if t.acceptedIP[ip]--; t.acceptedIP[ip] <= 0 {
		delete(t.acceptedIP, ip)
	}
	t.mu.Unlock()
}

// readConn is the reader goroutine of one accepted TCP connection. Until a
// frame on it has been authenticated, frames may be at most
// PreAuthMaxFrame bytes, and that first frame must arrive within
// FrameTimeout of the accept.
func (t *Transport) readConn(c net.Conn, ip netip.Addr) {
	defer t.wg.Done()
	defer func() {
		t.release(c, ip)
		c.Close()
	}()
	from := c.RemoteAddr().String()
	authed := false
	idle := time.Now().Add(t.cfg.FrameTimeout)
	for {
		limit := t.cfg.MaxFrame
		if authed {
			idle = time.Now().Add(t.cfg.IdleTimeout)
		} else {
			limit = min(limit, t.cfg.PreAuthMaxFrame)
		}
		_ = c.SetReadDeadline(idle)
		raw, err := t.readFrame(c, limit)
		if err != nil {
			switch {
			case t.isClosed():
			case raw == nil && isTimeout(err) && !authed:
				t.stats.frameTimeouts.Add(1)
				t.warn(warnSlow, "tcp connection sent no authenticated frame in time, closing", "from", from, "timeout", t.cfg.FrameTimeout)
			case raw == nil && isTimeout(err):
				t.log.Debug("tcp connection idle, closing", "from", from)
			case raw == nil:
				// Clean end between frames, or the connection failed.
				t.log.Debug("tcp connection ended", "from", from, "err", err)
			case isTimeout(err):
				t.stats.frameTimeouts.Add(1)
				t.warn(warnSlow, "tcp frame too slow to arrive, connection closed", "from", from, "bytes", len(raw), "err", err)
			case !authed && errors.Is(err, wire.ErrTooLarge):
				t.stats.preAuthRefused.Add(1)
				t.warn(warnSlow, "large tcp frame before authentication refused, connection closed", "from", from, "limit", limit, "err", err)
			default:
				t.badInput("tcp", from, len(raw), err, true)
			}
			return
		}
		if isRefusal(raw) {
			t.receiveRefusal("tcp", from, raw)
			continue
		}
		env, pr, err := t.decodeProven(raw)
		if err != nil {
			t.report("tcp", from, pr, err)
		}
		if reason := refusalReason(err); reason != "" {
			// A peer that cannot authenticate has nothing to say on this
			// stream: tell it why, and hang up.
			t.badInput("tcp", from, len(raw), err, true)
			t.refuseStream(c, from, reason)
			return
		}
		if err != nil {
			// The frame was complete, so the stream is still in step; a
			// header error would have failed readFrame.
			t.badInput("tcp", from, len(raw), err, false)
			continue
		}
		authed = true
		if isHello(env) {
			continue
		}
		t.stats.streamReceived.Add(1)
		t.stats.bytesReceived.Add(uint64(len(raw)))
		select {
		case t.incoming <- &Incoming{From: from, Env: env, Size: len(raw)}:
		case <-t.done:
			return
		}
	}
}

// isHello reports whether env is the hello that opens a connection: an
// anonymous envelope with nothing in it, which the engine would refuse.
func isHello(env *wire.Envelope) bool {
	return env.From == "" && env.FromAddr == "" && env.Body == nil && len(env.Members) == 0
}

// readFrame reads one raw frame (header and body) of at most limit payload
// bytes from a connection. It returns io.EOF only for a clean end between
// frames. On a timeout, raw is nil if no byte of the frame had arrived, and
// non-nil otherwise. Once the header has arrived, the rest of the frame
// must arrive within FrameTimeout plus its size at minFrameRate.
func (t *Transport) readFrame(c net.Conn, limit int) (raw []byte, err error) {
	var h [wire.HeaderSize]byte
	if n, err := io.ReadFull(c, h[:]); err != nil {
		if n == 0 {
			return nil, err
		}
		return h[:n], fmt.Errorf("%w: header: %v", wire.ErrShort, err)
	}
	_, size, err := parseHeader(h[:], limit)
	if err != nil {
		return h[:], err
	}
	total := wire.HeaderSize + size
	_ = c.SetReadDeadline(time.Now().Add(t.cfg.FrameTimeout + time.Duration(size)*time.Second/minFrameRate))
	// Grow the buffer as bytes arrive rather than trusting the length: a
	// peer announcing a large frame and sending little costs little.
	buf := make([]byte, wire.HeaderSize, min(total, wire.HeaderSize+frameChunk))
	copy(buf, h[:])
	for len(buf) < total {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(total-len(buf), max(len(buf), frameChunk)))
		}
		n, err := c.Read(buf[len(buf):min(cap(buf), total)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < total {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if isTimeout(err) {
				return buf, fmt.Errorf("payload: %d of %d bytes after %v: %w", len(buf)-wire.HeaderSize, size, t.cfg.FrameTimeout, err)
			}
			return buf, fmt.Errorf("%w: payload: %v", wire.ErrShort, err)
		}
	}
	return buf, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// decode checks and decodes one raw frame, checking its signature with the
// certificates and opening it with the keyring.
func (t *Transport) decode(raw []byte) (*wire.Envelope, error) {
	env, _, err := t.decodeProven(raw)
	return env, err
}

// decodeProven is decode, and also says what the frame proves about its
// sender once it authenticated (see badframe.go), whether or not it then
// decoded.
func (t *Transport) decodeProven(raw []byte) (*wire.Envelope, proof, error) {
	var pr proof
	flags, _, err := parseHeader(raw, t.cfg.MaxFrame)
	if err != nil {
		return nil, pr, err
	}
	signed := flags&(flagSigned|flagMAC) != 0
	ca := t.cfg.Certs
	switch {
	case ca != nil && !signed:
		return nil, pr, &refusable{reasonNoCert, fmt.Errorf("%w: unsigned frame (flags %#x) refused: this node requires node certificates", ErrAuth, flags)}
	case ca == nil && signed:
		return nil, pr, &refusable{reasonNoCertsHere, fmt.Errorf("%w: signed frame refused: this node has no certificates", ErrAuth)}
	}
	var (
		signer *peerCert
		keyID  [KeyIDSize]byte
	)
	if signed {
		if raw, signer, keyID, err = ca.open(raw); err != nil {
			return nil, pr, err
		}
		pr.name = signer.name
		if flags, _, err = parseHeader(raw, t.cfg.MaxFrame); err != nil {
			return nil, pr, err
		}
	}
	env, opened, err := t.open(raw, flags)
	pr.sealed = opened && !signed
	if err != nil {
		return nil, pr, err
	}
	if signed {
		if env.From != signer.name && !isHello(env) {
			return nil, pr, ca.refuse(reasonWrongName, "certificate of %q, envelope from %q", signer.name, env.From)
		}
		t.known.heard(env.FromAddr)
		ca.bind(env.FromAddr, keyID)
	}
	return env, pr, nil
}

// open decodes a plain frame, or opens a sealed one with the keyring;
// opened tells that the keyring authenticated it, whether or not it then
// decoded.
func (t *Transport) open(raw []byte, flags byte) (env *wire.Envelope, opened bool, err error) {
	kr := t.cfg.Keyring
	switch {
	case kr != nil && flags != flagSealed:
		return nil, false, &refusable{reasonNeedsKey, fmt.Errorf("%w: plaintext frame (flags %#x) refused: this node requires encryption", ErrAuth, flags)}
	case kr == nil && flags == flagSealed:
		return nil, false, &refusable{reasonNoKey, fmt.Errorf("%w: encrypted frame refused: this node has no keyring", ErrAuth)}
	case kr == nil && flags != 0:
		return nil, false, fmt.Errorf("%w: unknown frame flags %#x", wire.ErrMalformed, flags)
	}
	if kr != nil {
		if raw, err = kr.Open(raw); err != nil {
			if errors.Is(err, ErrAuth) {
				return nil, false, &refusable{reasonWrongKey, err}
			}
			return nil, false, err
		}
		opened = true
	}
	env, err = wire.Unmarshal(raw, t.cfg.MaxFrame)
	if err != nil {
		return nil, opened, err
	}
	return env, opened, nil
}

// badInput counts and logs a frame that could not be decoded; closing tells
// that the TCP connection it came on is being closed.
func (t *Transport) badInput(proto, from string, size int, err error, closing bool) {
	var kind int
	msg := "undecodable frame dropped"
	switch {
	case errors.Is(err, wire.ErrVersion):
		t.stats.versionErrors.Add(1)
		kind, msg = warnVersion, "frame from an unsupported protocol version refused"
	case errors.Is(err, ErrAuth):
		t.stats.authErrors.Add(1)
		kind, msg = warnAuth, "unauthenticated frame refused"
	default:
		t.stats.decodeErrors.Add(1)
		kind = warnDecode
	}
	if closing {
		msg += ", connection closed"
	}
	t.warn(kind, msg, "proto", proto, "from", from, "bytes", size, "err", err)
}

// Kinds of rate-limited warnings.
const (
	warnDecode = iota
	warnVersion
	warnAuth
	warnInbox
	warnAccept
	warnRefusal
	warnConns
	warnSlow
	warnReports
	warnKinds
)

// warn logs at Warn level at most once a second per kind, and at Debug level
// otherwise, so that a flood of bad input cannot flood the log.
func (t *Transport) warn(kind int, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := t.warnAt[kind].Load()
	if now-last >= int64(time.Second) && t.warnAt[kind].CompareAndSwap(last, now) {
		t.log.Warn(msg, args...)
		return
	}
	t.log.Debug(msg, args...)
}
