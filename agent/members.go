package agent

import (
	"context"
	"net/http"

	"github.com/hearsaydb/hearsay"
)

// watchMembers serves GET /v1/members?watch=1: Server-Sent Events, first
// one "members" event holding the current view (the body of GET
// /v1/members), then one event per change in the view, named by its kind
// (joined, alive, suspect, dead, left, reaped), with a hearsay.MemberEvent
// as JSON data.
func (a *Agent) watchMembers(w http.ResponseWriter, r *http.Request) {
	if !a.acquireWatcher(w) {
		return
	}
	defer a.releaseWatcher()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// Subscribe before taking the view, so that no change falls between.
	events, err := a.node.MemberEvents(ctx)
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	streamSSE(a, ctx, w, "member watch", streamEvent{name: "members", data: a.node.Members()}, events,
		func(ev hearsay.MemberEvent) streamEvent { return streamEvent{name: string(ev.Kind), data: ev} },
		"member watch fell behind and was dropped; watch again")
}
