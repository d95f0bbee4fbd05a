package hearsay

import (
	"context"
	"sync"
	"time"

	"github.com/hearsaydb/hearsay/engine/membership"
)

// MemberEventKind says what happened to a member.
type MemberEventKind string

// Member event kinds.
const (
	// MemberJoined: a member not known before appeared in the view.
	MemberJoined MemberEventKind = "joined"
	// MemberAlive: a suspect or dead member is alive again (it refuted the
	// suspicion or came back at a higher incarnation).
	MemberAlive MemberEventKind = "alive"
	// MemberSuspect: a member did not answer probes and is suspected.
	MemberSuspect MemberEventKind = "suspect"
	// MemberDead: a suspect did not refute in time and is declared dead.
	MemberDead MemberEventKind = "dead"
	// MemberLeft: a member announced a graceful departure.
	MemberLeft MemberEventKind = "left"
	// MemberReaped: a dead or left member was forgotten after
	// ReapTimeout; its name may join again.
	MemberReaped MemberEventKind = "reaped"
	// MemberRevoked: the member's certificate was revoked; it is expelled
	// for good.
	MemberRevoked MemberEventKind = "revoked"
)

// MemberEvent is a change in this node's view of the cluster.
type MemberEvent struct {
	Kind MemberEventKind `json:"kind"`
	// Member is the member's entry after the change (before it, for
	// MemberReaped).
	Member Member `json:"member"`
	// Prev is the state before the change; empty for MemberJoined.
	Prev MemberState `json:"prev,omitempty"`
	// Time is when this node saw the change.
	Time time.Time `json:"time"`
}

// memberEventBuffer is how many events a subscriber may fall behind before
// it is cut off.
const memberEventBuffer = 1024

// memberFeed fans membership events out to subscribers.
type memberFeed struct {
	mu     sync.Mutex
	subs   map[chan MemberEvent]struct{}
	closed bool
}

// MemberEvents streams the changes in this node's membership view (joined,
// alive, suspect, dead, left, reaped) until ctx is done; then the channel is
// closed. Read Members first for the current view. A subscriber that falls
// more than about a thousand events behind is cut off (its channel closed
// early) rather than slowing the node.
func (n *Node) MemberEvents(ctx context.Context) (<-chan MemberEvent, error) {
	f := &n.memberFeed
	ch := make(chan MemberEvent, memberEventBuffer)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, ErrClosed
	}
	if f.subs == nil {
		f.subs = map[chan MemberEvent]struct{}{}
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-n.closing:
		}
		f.drop(ch)
	}()
	return ch, nil
}

func (f *memberFeed) drop(ch chan MemberEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[ch]; ok {
		delete(f.subs, ch)
		close(ch)
	}
}

// publish delivers the engine's membership events to the subscribers.
func (f *memberFeed) publish(self string, now time.Time, evs []membership.Event) {
	if len(evs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		for _, ev := range evs {
			select {
			case ch <- memberEvent(self, now, ev):
			default:
				delete(f.subs, ch)
				close(ch)
			}
			if _, ok := f.subs[ch]; !ok {
				break
			}
		}
	}
}

func (f *memberFeed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		close(ch)
	}
	f.subs = nil
	f.closed = true
}

// memberState is m's state for the API: revoked, or its SWIM state.
func memberState(m membership.Member) MemberState {
	if m.Revoked {
		return StateRevoked
	}
	return stateName(m.State)
}

func memberEvent(self string, now time.Time, ev membership.Event) MemberEvent {
	m := ev.Member
	out := MemberEvent{
		Member: Member{Name: m.Name, Address: m.Addr, State: memberState(m), Incarnation: m.Incarnation, Self: m.Name == self},
		Prev:   stateName(ev.Prev),
		Time:   now,
	}
	switch {
	case ev.Removed:
		out.Kind = MemberReaped
	case ev.Joined:
		out.Kind, out.Prev = MemberJoined, ""
	default:
		out.Kind = MemberEventKind(out.Member.State)
	}
	return out
}
