package membership

import (
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Revoke expels the member name for good, as when its certificate is
// revoked: it becomes dead and Revoked in the view (added if unknown, so
// that it shows), is never probed, pinged, chosen as a gossip partner or
// reaped, and every later update about it is ignored. Revoking self does
// nothing. The revoked names are bounded by the revocations the driver
// accepts (certs.RevocationList).
func (m *Membership) Revoke(now time.Time, name string) {
	if name == "" || name == m.self.Name || m.revoked[name] {
		return
	}
	if m.revoked == nil {
		m.revoked = map[string]bool{}
	}
	m.revoked[name] = true
	delete(m.suspicions, name)
	if m.probe != nil && m.probe.target == name {
		m.probe = nil
	}
	p, known := m.members[name]
	if !known {
		p = &Member{Name: name, State: wire.State_DEAD, Since: now, Revoked: true}
		m.members[name] = p
		i, _ := slices.BinarySearch(m.names, name)
		m.names = slices.Insert(m.names, i, name)
		m.down[name] = true
		m.events = append(m.events, Event{Member: *p, Prev: wire.State_DEAD, Joined: true})
		m.timersDirty = true
		return
	}
	prev := p.State
	p.Revoked, p.Heard = true, false
	// The claim that set its last state no longer describes it: sent on
	// (member lists carry dead members), an alive claim's signature over a
	// dead state would be taken for a forgery of the relay's. Unsigned, a
	// receiver drops the entry quietly; each node revokes from the
	// revocation record itself.
	p.From, p.Sig = "", nil
	if prev != wire.State_DEAD {
		p.State, p.Since = wire.State_DEAD, now
	}
	m.down[name] = true
	m.timersDirty = true
	m.events = append(m.events, Event{Member: *p, Prev: prev})
}

// IsRevoked reports whether name was revoked.
func (m *Membership) IsRevoked(name string) bool { return m.revoked[name] }
