package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// watchMembers serves GET /v1/members?watch=1: Server-Sent Events, first
// one "members" event holding the current view (the body of GET
// /v1/members), then one event per change in the view, named by its kind
// (joined, alive, suspect, dead, left, reaped), with a hearsay.MemberEvent
// as JSON data.
func (a *Agent) watchMembers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// Subscribe before taking the view, so that no change falls between.
	events, err := a.node.MemberEvents(ctx)
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	view, err := json.Marshal(a.node.Members())
	if err != nil {
		a.fail(w, r, "", fmt.Errorf("encode members: %w", err))
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a watch outlives any write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "event: members\ndata: %s\n\n", view); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		a.log.Warn("member watch: response cannot be flushed; ending it", "err", err)
		return
	}
	heartbeat := time.NewTicker(HeartbeatInterval)
	defer heartbeat.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-a.stopping:
			_, _ = io.WriteString(w, "event: shutdown\ndata: {\"error\":\"agent is stopping\"}\n\n")
			_ = rc.Flush()
			return
		case <-heartbeat.C:
			_, err = io.WriteString(w, ": heartbeat\n\n")
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() == nil {
					_, _ = io.WriteString(w, "event: error\ndata: {\"error\":\"member watch fell behind and was dropped; watch again\"}\n\n")
					_ = rc.Flush()
				}
				return
			}
			data, merr := json.Marshal(ev)
			if merr != nil {
				a.log.Error("member watch: encode event", "err", merr)
				return
			}
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Kind, data)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return // the client went away
		}
	}
}
