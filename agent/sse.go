package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// streamEvent is one Server-Sent Event: its name, its JSON data and its
// id (the "id:" field, left out when empty).
type streamEvent struct {
	name string
	data any
	id   string
}

// streamSSE serves a Server-Sent Events response: the first event (if its
// name is not empty; a comment line otherwise), then one event per value
// from events, converted by toEvent (the zero streamEvent: nothing to send
// for that value), with a heartbeat comment every
// HeartbeatInterval. It ends when the client goes away, the agent stops
// (event "shutdown") or events closes while ctx is live — the node dropped
// a watcher that fell behind — with an "error" event saying so.
func streamSSE[T any](a *Agent, ctx context.Context, w http.ResponseWriter, what string, first streamEvent, events <-chan T, toEvent func(T) streamEvent, dropped string) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a watch outlives any write timeout
	_ = rc.SetReadDeadline(time.Time{})  // and the request read timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(ev streamEvent) error {
		id := ""
		if ev.id != "" {
			id = "id: " + ev.id + "\n"
		}
		if ev.name == "" {
			// A comment; with an id, an event without data, which sets
			// the client's last event id and dispatches nothing.
			_, err := fmt.Fprintf(w, ": %s\n%s\n", ev.data, id)
			return err
		}
		data, err := json.Marshal(ev.data)
		if err != nil {
			a.log.Error(what+": encode event", "err", err)
			return err
		}
		_, err = fmt.Fprintf(w, "%sevent: %s\ndata: %s\n\n", id, ev.name, data)
		return err
	}
	if err := write(first); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		a.log.Warn(what+": response cannot be flushed; ending it", "err", err)
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
			_ = write(streamEvent{name: "shutdown", data: ErrorResponse{Error: "agent is stopping"}})
			_ = rc.Flush()
			return
		case <-heartbeat.C:
			_, err = io.WriteString(w, ": heartbeat\n\n")
		case v, ok := <-events:
			if !ok {
				if ctx.Err() == nil {
					_ = write(streamEvent{name: "error", data: ErrorResponse{Error: dropped}})
					_ = rc.Flush()
				}
				return
			}
			ev := toEvent(v)
			if ev.name == "" && ev.data == nil {
				continue // nothing to send for v
			}
			err = write(ev)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return // the client went away
		}
	}
}
