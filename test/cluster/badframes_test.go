package cluster_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	endian "encoding/binary"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// spoofUDP sends payload to dst as a UDP datagram whose source address is
// src, through a raw socket (root): what a stranger can do to frame a
// member.
func spoofUDP(t *testing.T, src, dst string, payload []byte) {
	t.Helper()
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer syscall.Close(fd)
	pkt := make([]byte, 28, 28+len(payload))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, syscall.IPPROTO_UDP // IPv4, 20-byte header; TTL; UDP
	endian.BigEndian.PutUint16(pkt[2:], uint16(28+len(payload)))
	copy(pkt[12:16], s.Addr().AsSlice())
	copy(pkt[16:20], d.Addr().AsSlice())
	endian.BigEndian.PutUint16(pkt[20:], s.Port())
	endian.BigEndian.PutUint16(pkt[22:], d.Port())
	endian.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload))) // UDP checksum 0: none
	pkt = append(pkt, payload...)
	if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: d.Addr().As4()}); err != nil {
		t.Fatalf("spoofed datagram: %v", err)
	}
}

// frameIn returns a frame header (magic, version 1, flags, length) and body.
func frameIn(flags byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	h := []byte{'H', 'S', 1, flags, 0, 0, 0, 0}
	endian.BigEndian.PutUint32(h[4:], uint32(len(b)))
	return append(h, b...)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// keyIDOf returns the key id of dir's node.crt: the first 8 bytes of the
// SHA-256 of its DER, as any holder of the (public) certificate can.
func keyIDOf(t *testing.T, dir string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatal("node.crt holds no PEM block")
	}
	sum := sha256.Sum256(blk.Bytes)
	return sum[:8]
}

// TestBadFramesQuarantineTheirSender (issue 11: peers scored for
// undecodable or unauthenticated frames) on real processes: three honest
// agents of a certificate cluster. A stranger sends them junk in n2's name
// from n2's own gossip address (spoofed through a raw socket): frames
// under n2's key id with made-up signatures and session tags, plaintext
// and garbage. Nobody is scored for it. Then a member whose binary sends
// every second frame with a payload that does not decode, signed with its
// own certificate (HEARSAY_FAULT_BAD_FRAMES=2 in a faultinject build), is
// quarantined by every honest agent, and no honest member is.
func TestBadFramesQuarantineTheirSender(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("spoofing a source address needs root")
		}
		t.Skip("spoofing a source address needs root")
	}
	dirs := nodeCertsDirs(t, "n1", "n2", "n3", "bad")
	start := certStarter(t, dirs)
	honest := startHonestTrio(t, start)
	n1, n2, n3 := honest[0], honest[1], honest[2]
	for _, a := range honest {
		a.waitFor(20*time.Second, "three alive", func() bool { return allAlive(a, "n1", "n2", "n3") })
	}

	// The stranger's junk, all from n2's address.
	id := keyIDOf(t, dirs["n2"])
	junk := func() [][]byte {
		inner := frameIn(0, bytes.Repeat([]byte{0xff}, 40))
		now := endian.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		return [][]byte{
			frameIn(0x04, id, now, randomBytes(32), inner, randomBytes(64)), // signed under n2's key id
			frameIn(0x0c, id, now, randomBytes(32), []byte{0, 3}, []byte("crt"), inner, randomBytes(64)),
			frameIn(0x10, id, now, randomBytes(8), inner, randomBytes(16)), // a session frame under it
			inner, // plaintext that does not decode
			append([]byte("HS\x01"), randomBytes(60)...),
		}
	}
	const rounds = 40
	for range rounds {
		for _, dst := range []*agent{n1, n3} {
			for _, f := range junk() {
				spoofUDP(t, n2.gossip, dst.gossip, f)
			}
		}
	}
	for _, a := range []*agent{n1, n3} {
		a.waitFor(20*time.Second, "the junk refused", func() bool {
			return a.metric(`hearsay_transport_rejected_frames_total{reason="auth"}`)+a.metric(`hearsay_transport_rejected_frames_total{reason="decode"}`) >= 4*rounds
		})
		for _, kind := range []string{"undecodable", "unauthenticated"} {
			if v := a.metric(fmt.Sprintf(`hearsay_offences_total{kind=%q}`, kind)); v != 0 {
				t.Errorf("%s counted %v %s offences for a stranger's junk", a.name, v, kind)
			}
		}
		if v := a.metric("hearsay_transport_proven_bad_frames_total"); v != 0 {
			t.Errorf("%s: %v bad frames proven from a stranger's junk", a.name, v)
		}
		if q := a.quarantined(); len(q) > 0 {
			t.Errorf("%s quarantines %v after a stranger's junk in n2's name", a.name, q)
		}
	}

	bad := newAgent(t, "bad", n1.gossip)
	bad.bin, bad.env = faultAgentBinary(t), []string{"HEARSAY_FAULT_BAD_FRAMES=2"}
	start(bad)
	started := time.Now()
	for _, a := range honest {
		a.waitFor(60*time.Second, "the bad member quarantined", func() bool { return a.quarantined()["bad"] })
		t.Logf("%s quarantines the bad member %v after it answered (undecodable offences %v)", a.name,
			time.Since(started).Round(time.Millisecond), a.metric(`hearsay_offences_total{kind="undecodable"}`))
		if q := a.quarantined(); len(q) != 1 {
			t.Errorf("%s quarantines %v, want the bad member alone", a.name, q)
		}
		if v := a.metric(`hearsay_offences_total{kind="undecodable"}`); v < 1 {
			t.Errorf("%s: hearsay_offences_total{kind=\"undecodable\"} = %v", a.name, v)
		}
		if v := a.metric("hearsay_transport_proven_bad_frames_total"); v < 1 {
			t.Errorf("%s: hearsay_transport_proven_bad_frames_total = %v", a.name, v)
		}
	}
	// The honest agents still replicate.
	n3.put("after-bad-frames", "1")
	for _, a := range honest {
		a.waitFor(20*time.Second, "after-bad-frames", func() bool { _, ok := a.get("after-bad-frames"); return ok })
		if q := a.quarantined(); len(q) != 1 || !q["bad"] {
			t.Errorf("%s quarantines %v at the end, want the bad member alone", a.name, q)
		}
	}
}
