package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
)

// Reconnection backoff of hearsay watch: exponential with jitter.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

func newWatchCmd(g *globals) *cobra.Command {
	var kf keyFlags
	var o watchOpts
	var prefixArg string
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream changes to keys with a prefix, until Ctrl-C",
		Long: `Stream every change to keys with the given prefix, written here or learned
from peers, one line each: "put<TAB>key<TAB>value" or "delete<TAB>key"; a
key or value that is not printable text on one line is shown Go-quoted
("\xff\x00"), so binary values never reach the terminal raw. With --json,
one JSON object {"key" (base64), "key_text" (when the key is UTF-8),
"value" (base64), "version", "deleted", "revision"} per line. Runs until
interrupted.

It starts with what the agent's change log holds from its first change on
(use --from-now to start with the changes made from now on). If the stream
breaks (the agent restarts, or drops a watcher that fell behind), it
reconnects with exponential backoff and jitter and resumes after the last
change it printed (the event id, Last-Event-ID), so that no change is
missed or printed twice. Revisions are the agent's own: after its data
directory was replaced, or when the agent's change log no longer reaches
back far enough, the agent sends a snapshot of the current values instead
(said on stderr; with --json, objects with "snapshot": true, then
{"snapshot_end": true, "revision": N}); keys missing from it have no value.
The first connection must succeed; later ones are retried until Ctrl-C, or
for --retry-for.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := kf.parse("--prefix", prefixArg)
			if err != nil {
				return err
			}
			if o.retryFor < 0 {
				return usagef("--retry-for %v: must not be negative", o.retryFor)
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			o.asJSON, o.kf = g.json, &kf
			return watch(cmd.Context(), c, prefix, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&prefixArg, "prefix", "", "watch keys starting with this prefix (default: all keys)")
	cmd.Flags().BoolVar(&o.fromNow, "from-now", false, "start with the changes made from now on, without replaying earlier ones")
	cmd.Flags().DurationVar(&o.retryFor, "retry-for", 0, "give up with an error (exit 2) when the agent cannot be reached again for this long after the stream broke (0: retry until interrupted)")
	kf.register(cmd)
	return cmd
}

// watchOpts are hearsay watch's options.
type watchOpts struct {
	fromNow  bool
	retryFor time.Duration
	asJSON   bool
	kf       *keyFlags
}

// resumePoint is where a watch resumes: after revision last of the node
// whose id is node ("" when last is not a node's own: since 0).
type resumePoint struct {
	ok   bool
	last uint64
	node string
}

// retryable is an end of the stream after which the watch reconnects.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// watch reads the agent's Server-Sent Events until ctx is done,
// reconnecting and resuming when the stream breaks. It tells on stderr
// when the watch is in place.
func watch(ctx context.Context, c *client, prefixKey []byte, o watchOpts, w, stderr io.Writer) error {
	prefix := agent.QuoteKey(prefixKey)
	var at resumePoint
	if !o.fromNow {
		at.ok = true // since 0: from the first change the log holds
	}
	connected := false
	backoff := watchBackoffMin
	var down time.Time // when the stream broke, zero while connected
	for {
		progressed, err := watchStream(ctx, c, prefixKey, o, &at, !connected, w, stderr)
		if ctx.Err() != nil {
			return nil // interrupted: a normal end
		}
		if progressed {
			connected, backoff, down = true, watchBackoffMin, time.Time{}
		}
		var r retryable
		if !connected || !errors.As(err, &r) {
			return fmt.Errorf("watch %s: %w", prefix, err)
		}
		if down.IsZero() {
			down = time.Now()
		}
		if o.retryFor > 0 && time.Since(down) > o.retryFor {
			return fmt.Errorf("watch %s: gave up after %v (--retry-for): %w", prefix, o.retryFor, err)
		}
		// Full jitter over the upper half: reconnecting watchers spread.
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, watchBackoffMax)
		fmt.Fprintf(stderr, "watch: %v; reconnecting in %v\n", err, d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// watchStream runs one connection of a watch: it connects (resuming from
// at), prints the events and moves at forward. It returns whether it
// connected, and why the stream ended: a retryable error when reconnecting
// may help.
func watchStream(ctx context.Context, c *client, prefixKey []byte, o watchOpts, at *resumePoint, first bool, w, stderr io.Writer) (bool, error) {
	q := url.Values{"prefix": {string(prefixKey)}}
	h := http.Header{"Accept": {"text/event-stream"}}
	if at.ok {
		h.Set("Last-Event-ID", strconv.FormatUint(at.last, 10))
		if at.node != "" {
			q.Set("node_id", at.node)
		}
	}
	resp, err := c.do(ctx, http.MethodGet, c.routeURL("/v1/watch", q), nil, h, true)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.code/100 == 4 {
			return false, err // a refusal: reconnecting will not help
		}
		var nh *notHearsayError
		if errors.As(err, &nh) {
			return false, err
		}
		return false, retryable{err}
	}
	defer resp.Body.Close()
	node := resp.Header.Get(agent.NodeIDHeader)
	prefix := agent.QuoteKey(prefixKey)
	switch {
	case first:
		fmt.Fprintf(stderr, "watching keys with prefix %s at %s; Ctrl-C to stop\n", prefix, c.addr)
	case at.ok:
		fmt.Fprintf(stderr, "watch: reconnected to %s; resuming after revision %d\n", c.addr, at.last)
	default:
		fmt.Fprintf(stderr, "watch: reconnected to %s\n", c.addr)
	}
	r := bufio.NewReader(resp.Body)
	var event, id string
	hasID, inSnapshot := false, false
	var data strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			if errors.Is(err, io.EOF) {
				return true, retryable{fmt.Errorf("the agent at %s closed the stream", c.addr)}
			}
			return true, retryable{fmt.Errorf("reading the stream: %w", err)}
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if err := printEvent(event, data.String(), o, &inSnapshot, w, stderr); err != nil {
				return true, err
			}
			if hasID {
				rev, err := strconv.ParseUint(id, 10, 64)
				if err != nil {
					return true, fmt.Errorf("the agent sent event id %.40q, not a revision", id)
				}
				*at = resumePoint{ok: true, last: rev, node: node}
			}
			event, id, hasID = "", "", false
			data.Reset()
		case strings.HasPrefix(line, ":"):
			// comment: greeting or heartbeat
		case strings.HasPrefix(line, "id:"):
			id, hasID = strings.TrimPrefix(strings.TrimPrefix(line, "id:"), " "), true
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// printEvent prints one event. The agent's shutdown and error events (it
// stops, or dropped this watcher) end the stream with a retryable error.
// inSnapshot is set while the events of a snapshot come.
func printEvent(event, data string, o watchOpts, inSnapshot *bool, w, stderr io.Writer) error {
	switch event {
	case "":
		return nil
	case "put", "delete":
	case agent.EventSnapshotEnd:
		var end agent.SnapshotEndJSON
		if err := json.Unmarshal([]byte(data), &end); err != nil {
			return fmt.Errorf("decoding event %s: %w", event, err)
		}
		*inSnapshot = false
		fmt.Fprintf(stderr, "watch: end of the snapshot, as of revision %d; changes follow\n", end.Revision)
		if o.asJSON {
			_, err := fmt.Fprintln(w, data)
			return err
		}
		return nil
	default:
		var er agent.ErrorResponse
		msg := fmt.Sprintf("agent sent %s: %s", event, data)
		if json.Unmarshal([]byte(data), &er) == nil && er.Error != "" {
			msg = er.Error
		}
		if event == "shutdown" || event == "error" {
			return retryable{errors.New(msg)}
		}
		return errors.New(msg)
	}
	var ev agent.EventJSON
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		return fmt.Errorf("decoding event: %w", err)
	}
	if ev.Snapshot && !*inSnapshot {
		*inSnapshot = true
		fmt.Fprintln(stderr, "watch: the agent's change log does not reach back far enough (or it is another node): a snapshot of the current values follows")
	}
	if o.asJSON {
		_, err := fmt.Fprintln(w, data)
		return err
	}
	key, err := jsonKey(ev.Key)
	if err != nil {
		return err
	}
	if ev.Deleted {
		_, err := fmt.Fprintf(w, "delete\t%s\n", o.kf.show(key))
		return err
	}
	v, err := base64.StdEncoding.DecodeString(ev.Value)
	if err != nil {
		return fmt.Errorf("value of %s is not base64: %w", agent.QuoteKey(key), err)
	}
	_, err = fmt.Fprintf(w, "put\t%s\t%s\n", o.kf.show(key), displayText(v))
	return err
}
