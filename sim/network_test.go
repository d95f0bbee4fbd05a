package sim

import (
	"bytes"
	"sort"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/internal/transport"
)

// TestStreamsAndDatagrams: frames larger than a datagram travel as the
// transport sends them, over a TCP stream: loss and duplication spare
// them, jitter does not reorder them, and a cut link breaks the stream,
// losing what was in flight; datagrams are lost, duplicated and reordered,
// and those in flight when the link is cut still arrive.
func TestStreamsAndDatagrams(t *testing.T) {
	c := New(Options{Seed: 3, Latency: 10 * time.Millisecond, Jitter: 100 * time.Millisecond, Loss: 0.3, Duplicate: 0.3})
	a, err := c.AddNode("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.AddNode("b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(time.Second); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{'B'}, transport.DefaultMaxPacket+1)
	small := bytes.Repeat([]byte{'s'}, transport.DefaultMaxPacket)
	const sends = 200
	for i := range sends {
		big[0], small[0] = byte(i), byte(i) // tell them apart
		c.sendRaw(a, b.Addr, bytes.Clone(big))
		c.sendRaw(a, b.Addr, bytes.Clone(small))
	}
	var bigs, smalls int
	var last time.Time
	var order []byte
	for _, ev := range c.events.sortedTo(b.Addr) {
		if len(ev.frame) > transport.DefaultMaxPacket {
			bigs++
			if ev.at.Before(last) {
				t.Fatalf("stream frame %d arrives at %v, before the one sent before it (%v)", ev.frame[0], ev.at, last)
			}
			last = ev.at
			order = append(order, ev.frame[0])
		} else {
			smalls++
		}
	}
	if bigs != sends {
		t.Fatalf("%d stream frames in flight, want all %d: loss and duplication spare TCP", bigs, sends)
	}
	for i, x := range order {
		if int(x) != i {
			t.Fatalf("stream frames queued out of order: %v", order)
		}
	}
	st := c.Stats()
	if st.Streamed != sends || st.Lost == 0 || st.Duplicated == 0 || smalls == sends {
		t.Fatalf("datagrams: %d in flight, stats %+v: want some lost and some duplicated", smalls, st)
	}
	// Cut the link with everything in flight: the stream breaks, the
	// datagrams already sent arrive.
	c.Cut(a.Addr, b.Addr)
	lost, before := st.Lost, b.Engine.Offences()[trust.Undecodable]
	if err := c.RunFor(time.Second); err != nil {
		t.Fatal(err)
	}
	st = c.Stats()
	if got := st.Lost - lost; got != sends {
		t.Fatalf("%d frames lost to the cut, want the %d stream frames in flight", got, sends)
	}
	// Junk does not decode: a datagram that arrives counts as an offence.
	if got := b.Engine.Offences()[trust.Undecodable] - before; got != uint64(smalls) {
		t.Fatalf("%d datagrams arrived after the cut, want the %d in flight", got, smalls)
	}
}

// sortedTo returns the deliveries queued for addr, in the order they will
// happen.
func (q eventQueue) sortedTo(addr string) []event {
	var out []event
	for _, ev := range q {
		if ev.to == addr {
			out = append(out, ev)
		}
	}
	sort.Sort(eventQueue(out))
	return out
}
