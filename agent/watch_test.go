package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// idEvent is one Server-Sent Event with its id; an event with an id and
// no data (the greeting of a watch from now) has an empty name.
type idEvent struct {
	name, data string
	id         string
	hasID      bool
}

// readIDEvents parses an event stream, ids included, into ch until it ends.
func readIDEvents(body io.Reader, ch chan<- idEvent) {
	defer close(ch)
	sc := bufio.NewScanner(body)
	var ev idEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" || ev.hasID {
				ch <- ev
			}
			ev = idEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id, ev.hasID = strings.TrimPrefix(line, "id: "), true
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// openWatch starts a watch and returns its events and response.
func openWatch(t *testing.T, srv *httptest.Server, query string, header ...string) (<-chan idEvent, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v1/watch?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("watch ?%s: %s %s", query, resp.Status, b)
	}
	ch := make(chan idEvent, 64)
	go readIDEvents(resp.Body, ch)
	return ch, resp
}

func nextIDEvent(t *testing.T, ch <-chan idEvent) idEvent {
	t.Helper()
	return next(t, ch)
}

// wantChange checks a put or delete event: key, revision as id and in the
// data, not from a snapshot.
func wantChange(t *testing.T, ev idEvent, name, key string, rev uint64) {
	t.Helper()
	var d EventJSON
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	if ev.name != name || d.KeyText != key || ev.id != strconv.FormatUint(rev, 10) || d.Revision != rev || d.Snapshot {
		t.Fatalf("event %+v, want %s %s with id and revision %d", ev, name, key, rev)
	}
}

func TestWatchResumeSSE(t *testing.T) {
	cfg := testConfig(t)
	cfg.Bounds.ChangeLogEntries = 10
	a, srv := newTestServer(t, cfg)
	nodeID := a.Node().Status().NodeID
	putKey := func(key, value string) {
		t.Helper()
		wantCode(t, do(t, srv, http.MethodPut, kvPath(key), "", []byte(value)), http.StatusOK)
	}

	// From now: the greeting carries the current revision as its id.
	events, resp := openWatch(t, srv, "prefix=w/")
	if got := resp.Header.Get(NodeIDHeader); got != nodeID {
		t.Fatalf("%s = %q, want %q", NodeIDHeader, got, nodeID)
	}
	greet := nextIDEvent(t, events)
	r0, err := strconv.ParseUint(greet.id, 10, 64)
	if greet.name != "" || err != nil {
		t.Fatalf("greeting %+v, want an id-only event", greet)
	}
	putKey("w/1", "a")
	putKey("w/2", "b")
	wantChange(t, nextIDEvent(t, events), "put", "w/1", r0+1)
	wantChange(t, nextIDEvent(t, events), "put", "w/2", r0+2)
	_ = resp.Body.Close()

	// Missed while disconnected, then resumed by since= and by
	// Last-Event-ID, which wins over since=.
	putKey("w/3", "c")
	putKey("x/other", "not watched")
	wantCode(t, do(t, srv, http.MethodDelete, kvPath("w/1"), "", nil), http.StatusOK)
	events, _ = openWatch(t, srv, fmt.Sprintf("prefix=w/&since=%d", r0+2))
	wantChange(t, nextIDEvent(t, events), "put", "w/3", r0+3)
	wantChange(t, nextIDEvent(t, events), "delete", "w/1", r0+5)
	events, _ = openWatch(t, srv, "prefix=w/&since=0&node_id="+nodeID, "Last-Event-ID", strconv.FormatUint(r0+3, 10))
	wantChange(t, nextIDEvent(t, events), "delete", "w/1", r0+5)
	putKey("w/4", "live")
	wantChange(t, nextIDEvent(t, events), "put", "w/4", r0+6)

	// Twenty more changes: the 10-entry log no longer reaches r0+2, and
	// another node's revision means nothing here. Both get a snapshot.
	for i := range 20 {
		putKey("x/filler", strconv.Itoa(i))
	}
	snapshot := []struct{ name, key string }{{"delete", "w/1"}, {"put", "w/2"}, {"put", "w/3"}, {"put", "w/4"}}
	for i, query := range []string{
		fmt.Sprintf("prefix=w/&since=%d", r0+2),
		fmt.Sprintf("prefix=w/&since=%d&node_id=00000000000000ff", a.Node().Revision()),
	} {
		if i == 1 {
			snapshot = append(snapshot, struct{ name, key string }{"put", "w/5"})
		}
		events, _ := openWatch(t, srv, query)
		for _, want := range snapshot {
			ev := nextIDEvent(t, events)
			var d EventJSON
			if err := json.Unmarshal([]byte(ev.data), &d); err != nil || ev.name != want.name || d.KeyText != want.key || !d.Snapshot || ev.hasID || d.Revision != 0 {
				t.Fatalf("?%s: event %+v, want a snapshot %s of %s without id", query, ev, want.name, want.key)
			}
		}
		end := nextIDEvent(t, events)
		var d SnapshotEndJSON
		rev := a.Node().Revision()
		if err := json.Unmarshal([]byte(end.data), &d); err != nil || end.name != EventSnapshotEnd || !d.SnapshotEnd || d.Revision != rev || end.id != strconv.FormatUint(rev, 10) {
			t.Fatalf("?%s: event %+v, want %s at revision %d", query, end, EventSnapshotEnd, rev)
		}
		putKey("w/5", query)
		wantChange(t, nextIDEvent(t, events), "put", "w/5", rev+1)
	}

	// Bad resume points are refused with a clear error.
	for _, bad := range []struct{ query, header, want string }{
		{"since=abc", "", "bad since"},
		{"since=-1", "", "bad since"},
		{"", "x", "bad Last-Event-ID"},
		{"node_id=xyz", "", "bad node_id"},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/watch?"+bad.query, nil)
		if bad.header != "" {
			req.Header.Set("Last-Event-ID", bad.header)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), bad.want) {
			t.Errorf("watch ?%s Last-Event-ID %q: %s %s, want 400 %q", bad.query, bad.header, resp.Status, body, bad.want)
		}
	}
}

// TestChangeLogFlags: the change log's bounds reach the node; 0 keeps
// nothing (every resume from the past is a snapshot); negative is refused.
func TestChangeLogFlags(t *testing.T) {
	cfg, err := ParseConfig([]string{"--change-log-entries", "0", "--change-log-bytes", "1MiB", "--in-memory"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bounds.ChangeLogEntries != 0 || cfg.Bounds.ChangeLogBytes != 1<<20 {
		t.Fatalf("bounds %+v", cfg.Bounds)
	}
	if _, err := ParseConfig([]string{"--change-log-entries", "-1", "--in-memory"}, nil); err == nil || !strings.Contains(err.Error(), "--change-log-entries -1") {
		t.Fatalf("--change-log-entries -1: %v", err)
	}
	cfg = testConfig(t)
	cfg.Bounds.ChangeLogEntries = 0
	a, srv := newTestServer(t, cfg)
	wantCode(t, do(t, srv, http.MethodPut, kvPath("k"), "", []byte("v")), http.StatusOK)
	if st := a.Node().Status(); st.Revision != 1 {
		t.Fatalf("revision %d after one write, want 1", st.Revision)
	}
	events, _ := openWatch(t, srv, "prefix=k&since=0")
	if ev := nextIDEvent(t, events); ev.name != "put" || ev.hasID || !strings.Contains(ev.data, `"snapshot":true`) {
		t.Fatalf("first event %+v, want a snapshot put: the log keeps nothing", ev)
	}
	if ev := nextIDEvent(t, events); ev.name != EventSnapshotEnd || ev.id != "1" {
		t.Fatalf("second event %+v, want %s with id 1", ev, EventSnapshotEnd)
	}
}
