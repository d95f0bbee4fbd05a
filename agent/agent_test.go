package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hearsaydb/hearsay"
)

// testConfig is an in-memory node on a free loopback port, without an HTTP
// listener, logging warnings to the test output.
func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name = "t1"
	cfg.InMemory = true
	cfg.Bind = "127.0.0.1:0"
	cfg.HTTP = ""
	cfg.MaxValueSize = 1024
	cfg.BuildVersion = "test-version"
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// newTestServer runs an agent's handler in an httptest.Server around a real
// node, and waits until the node is ready.
func newTestServer(t *testing.T, cfg Config) (*Agent, *httptest.Server) {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		_ = a.Close() // ends watches, so that srv.Close does not wait on them
		srv.Close()
	})
	waitFor(t, 10*time.Second, "node ready", func() bool { return a.Node().Status().Ready })
	return a, srv
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

type reply struct {
	code   int
	header http.Header
	body   []byte
}

func do(t *testing.T, srv *httptest.Server, method, path, contentType string, body []byte, header ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: data}
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
	return v
}

func wantCode(t *testing.T, r reply, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %s", r.code, code, r.body)
	}
}

// wantError checks a JSON error reply.
func wantError(t *testing.T, r reply, code int, contains string) {
	t.Helper()
	wantCode(t, r, code)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	e := decode[ErrorResponse](t, r)
	if e.Error == "" || !strings.Contains(e.Error, contains) {
		t.Errorf("error message %q, want one containing %q", e.Error, contains)
	}
}

func kvPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

// b64 is a key as the JSON API carries it.
func b64(key string) string { return base64.StdEncoding.EncodeToString([]byte(key)) }

func TestPutGetDelete(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))

	r := do(t, srv, http.MethodPut, kvPath("greeting"), "application/octet-stream", []byte("hello\x00world"))
	wantCode(t, r, http.StatusOK)
	put := decode[KeyVersion](t, r)
	if put.Key != b64("greeting") || put.KeyText != "greeting" || !strings.Contains(put.Version, "@") {
		t.Fatalf("put reply %+v", put)
	}

	r = do(t, srv, http.MethodGet, kvPath("greeting"), "", nil)
	wantCode(t, r, http.StatusOK)
	got := decode[EntryJSON](t, r)
	want := EntryJSON{Key: b64("greeting"), KeyText: "greeting", Value: base64.StdEncoding.EncodeToString([]byte("hello\x00world")), Version: put.Version}
	if got != want {
		t.Fatalf("get: %+v, want %+v", got, want)
	}

	r = do(t, srv, http.MethodGet, kvPath("greeting"), "", nil, "Accept", "application/octet-stream")
	wantCode(t, r, http.StatusOK)
	if string(r.body) != "hello\x00world" {
		t.Errorf("raw get body %q", r.body)
	}
	if v := r.header.Get(VersionHeader); v != put.Version {
		t.Errorf("%s %q, want %q", VersionHeader, v, put.Version)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("raw get Content-Type %q", ct)
	}

	r = do(t, srv, http.MethodDelete, kvPath("greeting"), "", nil)
	wantCode(t, r, http.StatusOK)
	del := decode[KeyVersion](t, r)
	if del.Key != b64("greeting") || del.Version == put.Version {
		t.Fatalf("delete reply %+v (put at %s)", del, put.Version)
	}
	wantError(t, do(t, srv, http.MethodGet, kvPath("greeting"), "", nil), http.StatusNotFound, `key "greeting" not found`)
}

func TestPutBodies(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	cases := []struct {
		name, contentType string
		body              []byte
		want              string
	}{
		{"json", "application/json", []byte(`{"value":"aGVsbG8="}`), "hello"},
		{"json with charset", "application/json; charset=utf-8", []byte(`{"value":"aGk="}`), "hi"},
		{"json unpadded base64", "application/json", []byte(`{"value":"aGk"}`), "hi"},
		{"octet-stream", "application/octet-stream", []byte(`{"value":"aGk="}`), `{"value":"aGk="}`},
		{"no content type", "", []byte("plain"), "plain"},
		{"text", "text/plain", []byte("text"), "text"},
		{"empty value", "application/octet-stream", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := "body/" + c.name
			wantCode(t, do(t, srv, http.MethodPut, kvPath(key), c.contentType, c.body), http.StatusOK)
			r := do(t, srv, http.MethodGet, kvPath(key), "", nil, "Accept", "application/octet-stream")
			wantCode(t, r, http.StatusOK)
			if string(r.body) != c.want {
				t.Errorf("stored %q, want %q", r.body, c.want)
			}
		})
	}
}

func TestKeysAreNotCleanedPaths(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	keys := []string{"a/b", "x//../y", "dir/./z/", "space and ünïcode", "q?x=1#f", ".."}
	for _, k := range keys {
		wantCode(t, do(t, srv, http.MethodPut, kvPath(k), "", []byte("v:"+k)), http.StatusOK)
	}
	for _, k := range keys {
		r := do(t, srv, http.MethodGet, kvPath(k), "", nil, "Accept", "application/octet-stream")
		wantCode(t, r, http.StatusOK)
		if string(r.body) != "v:"+k {
			t.Errorf("key %q: value %q", k, r.body)
		}
	}
	r := do(t, srv, http.MethodGet, "/v1/kv?prefix="+url.QueryEscape("x//"), "", nil)
	sr := decode[ScanResponse](t, r)
	if len(sr.Entries) != 1 || sr.Entries[0].Key != b64("x//../y") || sr.Entries[0].KeyText != "x//../y" {
		t.Errorf("scan x//: %+v", sr)
	}
}

func TestScanPaging(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("p/%02d", i)
		want = append(want, k)
		wantCode(t, do(t, srv, http.MethodPut, kvPath(k), "", []byte(k)), http.StatusOK)
	}
	wantCode(t, do(t, srv, http.MethodPut, kvPath("q/other"), "", []byte("x")), http.StatusOK)
	wantCode(t, do(t, srv, http.MethodPut, kvPath("p/deleted"), "", []byte("x")), http.StatusOK)
	wantCode(t, do(t, srv, http.MethodDelete, kvPath("p/deleted"), "", nil), http.StatusOK)

	// Default limit: everything in one page, no next.
	sr := decode[ScanResponse](t, do(t, srv, http.MethodGet, "/v1/kv?prefix=p/", "", nil))
	if len(sr.Entries) != 25 || sr.Next != "" {
		t.Fatalf("default scan: %d entries, next %q", len(sr.Entries), sr.Next)
	}

	// Pages of 10, following next.
	var got []string
	cursor, pages := "", 0
	for {
		q := url.Values{"prefix": {"p/"}, "limit": {"10"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := do(t, srv, http.MethodGet, "/v1/kv?"+q.Encode(), "", nil)
		wantCode(t, r, http.StatusOK)
		sr := decode[ScanResponse](t, r)
		pages++
		if len(sr.Entries) > 10 {
			t.Fatalf("page of %d entries, limit 10", len(sr.Entries))
		}
		for _, e := range sr.Entries {
			v, err := base64.StdEncoding.DecodeString(e.Value)
			if err != nil || string(v) != e.KeyText || e.Key != b64(e.KeyText) || e.Version == "" {
				t.Errorf("entry %+v", e)
			}
			got = append(got, e.KeyText)
		}
		if sr.Next == "" {
			break
		}
		cursor = sr.Next
	}
	if pages != 3 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%d pages, keys %v, want 3 pages of %v", pages, got, want)
	}

	// start is a raw key (percent-encoded): the scan begins there.
	sr = decode[ScanResponse](t, do(t, srv, http.MethodGet, "/v1/kv?prefix=p/&start=p/2", "", nil))
	if len(sr.Entries) != 5 || sr.Entries[0].KeyText != "p/20" {
		t.Errorf("scan from p/2: %+v", sr.Entries)
	}
	// All keys; a limit over the maximum is refused, not silently lowered.
	sr = decode[ScanResponse](t, do(t, srv, http.MethodGet, fmt.Sprintf("/v1/kv?limit=%d", MaxScanLimit), "", nil))
	if len(sr.Entries) != 26 {
		t.Errorf("scan of everything: %d entries, want 26", len(sr.Entries))
	}
	wantError(t, do(t, srv, http.MethodGet, "/v1/kv?limit=99999", "", nil), http.StatusBadRequest, "from 1 to 10000")
	wantError(t, do(t, srv, http.MethodGet, "/v1/kv?cursor=%25%25", "", nil), http.StatusBadRequest, "bad cursor")
	// An empty result is an empty array, not null.
	r := do(t, srv, http.MethodGet, "/v1/kv?prefix=none/", "", nil)
	if !bytes.Contains(r.body, []byte(`"entries":[]`)) {
		t.Errorf("empty scan body %s", r.body)
	}
	for _, bad := range []string{"0", "-1", "x", "1.5"} {
		wantError(t, do(t, srv, http.MethodGet, "/v1/kv?limit="+bad, "", nil), http.StatusBadRequest, "bad limit")
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name string
	data string
}

// readEvents parses an event stream into ch until it ends: the named
// events of readIDEvents, without their ids.
func readEvents(body io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	all := make(chan idEvent)
	go readIDEvents(body, all)
	for ev := range all {
		if ev.name != "" {
			ch <- sseEvent{name: ev.name, data: ev.data}
		}
	}
}

func nextEvent(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	return next(t, ch)
}

// next is the next value of an event stream, within 10 s.
func next[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	var zero T
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return zero
}

func TestWatchSSE(t *testing.T) {
	a, srv := newTestServer(t, testConfig(t))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v1/watch?prefix=w/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req) // returns once the watch is registered and flushed
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 16)
	go readEvents(resp.Body, events)

	put := decode[KeyVersion](t, do(t, srv, http.MethodPut, kvPath("w/1"), "", []byte("one")))
	wantCode(t, do(t, srv, http.MethodPut, kvPath("elsewhere"), "", []byte("x")), http.StatusOK)
	del := decode[KeyVersion](t, do(t, srv, http.MethodDelete, kvPath("w/1"), "", nil))

	ev := nextEvent(t, events)
	if ev.name != "put" {
		t.Fatalf("first event %+v, want put", ev)
	}
	var data EventJSON
	if err := json.Unmarshal([]byte(ev.data), &data); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	want := EventJSON{Key: b64("w/1"), KeyText: "w/1", Value: base64.StdEncoding.EncodeToString([]byte("one")), Version: put.Version, Revision: data.Revision}
	if data != want || data.Revision == 0 {
		t.Errorf("put event %+v, want %+v", data, want)
	}

	ev = nextEvent(t, events) // "elsewhere" is filtered out by the prefix
	if ev.name != "delete" {
		t.Fatalf("second event %+v, want delete", ev)
	}
	if err := json.Unmarshal([]byte(ev.data), &data); err != nil {
		t.Fatal(err)
	}
	if data.Key != b64("w/1") || !data.Deleted || data.Version != del.Version {
		t.Errorf("delete event %+v, want w/1 deleted at %s", data, del.Version)
	}

	// Closing the agent ends the stream.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		if ev.name == "put" || ev.name == "delete" {
			t.Errorf("unexpected event after close: %+v", ev)
		}
	}
}

func TestMembersStatusMetrics(t *testing.T) {
	a, srv := newTestServer(t, testConfig(t))

	r := do(t, srv, http.MethodGet, "/v1/members", "", nil)
	wantCode(t, r, http.StatusOK)
	var raw []map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 {
		t.Fatalf("members %s, want one", r.body)
	}
	for _, field := range []string{"name", "address", "state", "incarnation"} {
		if _, ok := raw[0][field]; !ok {
			t.Errorf("member has no %q: %s", field, r.body)
		}
	}
	if raw[0]["name"] != "t1" || raw[0]["state"] != string(hearsay.StateAlive) {
		t.Errorf("member %v", raw[0])
	}

	r = do(t, srv, http.MethodGet, "/v1/status", "", nil)
	wantCode(t, r, http.StatusOK)
	st := decode[StatusResponse](t, r)
	if st.Name != "t1" || !st.Ready || st.Version != "test-version" || st.Members != 1 || st.Address != a.Node().Status().Address {
		t.Errorf("status %s", r.body)
	}
	if !bytes.Contains(r.body, []byte(`"http_address"`)) {
		t.Errorf("status has no http_address: %s", r.body)
	}

	r = do(t, srv, http.MethodGet, "/metrics", "", nil)
	wantCode(t, r, http.StatusOK)
	for _, m := range []string{
		"hearsay_http_requests_total{",
		`method="GET",route="/v1/members"`,
		"hearsay_http_request_duration_seconds_bucket{",
		"go_goroutines ",
		// One family per mechanism, and the node's own counters.
		"hearsay_directmail_sent_mails_total ",
		`hearsay_rumor_removed_total{reason="age"}`,
		"hearsay_rumor_hot ",
		`hearsay_antientropy_completed_exchanges_total{role="responder"}`,
		`hearsay_members{state="alive"} 1`,
		`hearsay_transport_rejected_frames_total{reason="version"}`,
		"hearsay_store_sync_seconds_bucket{",
	} {
		if !bytes.Contains(r.body, []byte(m)) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

func TestBadRequests(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t)) // MaxValueSize 1024
	big := bytes.Repeat([]byte("x"), 2048)
	bigJSON := fmt.Sprintf(`{"value":%q}`, base64.StdEncoding.EncodeToString(big[:1500]))
	cases := []struct {
		name, method, path, contentType string
		body                            []byte
		code                            int
		msg                             string
	}{
		{"oversized raw value", "PUT", "/v1/kv/k", "application/octet-stream", big, 413, "value too large"},
		{"oversized value in JSON", "PUT", "/v1/kv/k", "application/json", []byte(bigJSON), 413, "too large"},
		{"oversized key", "PUT", kvPath(strings.Repeat("k", 1025)), "", []byte("v"), 413, "key too large"},
		{"oversized key get", "GET", kvPath(strings.Repeat("k", 1025)), "", nil, 413, "key too large"},
		{"empty key put", "PUT", "/v1/kv/", "", []byte("v"), 400, "empty key"},
		{"empty key get", "GET", "/v1/kv/", "", nil, 400, "empty key"},
		{"empty key delete", "DELETE", "/v1/kv/", "", nil, 400, "empty key"},
		{"malformed JSON", "PUT", "/v1/kv/k", "application/json", []byte(`{"value":`), 400, "malformed JSON"},
		{"JSON not an object", "PUT", "/v1/kv/k", "application/json", []byte(`"aGk="`), 400, "malformed JSON"},
		{"JSON unknown field", "PUT", "/v1/kv/k", "application/json", []byte(`{"valu":"aGk="}`), 400, "malformed JSON"},
		{"JSON trailing data", "PUT", "/v1/kv/k", "application/json", []byte(`{"value":"aGk="} {}`), 400, "after the object"},
		{"JSON without value", "PUT", "/v1/kv/k", "application/json", []byte(`{}`), 400, `no "value"`},
		{"bad base64", "PUT", "/v1/kv/k", "application/json", []byte(`{"value":"not base64!"}`), 400, "base64"},
		{"unknown key", "GET", "/v1/kv/nope", "", nil, 404, `key "nope" not found`},
		{"wrong method on key", "POST", "/v1/kv/k", "", nil, 405, "not allowed"},
		{"wrong method on members", "DELETE", "/v1/members", "", nil, 405, "not allowed"},
		{"wrong method on scan", "PUT", "/v1/kv", "", nil, 405, "not allowed"},
		{"unknown route", "GET", "/v2/nothing", "", nil, 404, "no such endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv, c.method, c.path, c.contentType, c.body)
			wantError(t, r, c.code, c.msg)
			if c.code == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}
	// Nothing was written by the failed puts.
	wantCode(t, do(t, srv, http.MethodGet, "/v1/kv/k", "", nil), http.StatusNotFound)
}

func TestClosedNodeIsUnavailable(t *testing.T) {
	a, srv := newTestServer(t, testConfig(t))
	if err := a.Node().Close(); err != nil {
		t.Fatal(err)
	}
	r := do(t, srv, http.MethodGet, "/v1/kv/k", "", nil)
	wantError(t, r, http.StatusServiceUnavailable, "closed")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	wantError(t, do(t, srv, http.MethodPut, "/v1/kv/k", "", []byte("v")), http.StatusServiceUnavailable, "closed")
}

func TestStatusCode(t *testing.T) {
	cases := []struct {
		err  error
		code int
	}{
		{hearsay.ErrEmptyKey, 400},
		{fmt.Errorf("put: %w", hearsay.ErrKeyTooLarge), 413},
		{fmt.Errorf("put: %w", hearsay.ErrValueTooLarge), 413},
		{fmt.Errorf("%w: %q", hearsay.ErrNotFound, "k"), 404},
		{fmt.Errorf("get: %w", hearsay.ErrNotReady), 503},
		{hearsay.ErrClosed, 503},
		{context.DeadlineExceeded, 504},
		{errors.New("disk on fire"), 500},
	}
	for _, c := range cases {
		if got := StatusCode(c.err); got != c.code {
			t.Errorf("StatusCode(%v) = %d, want %d", c.err, got, c.code)
		}
	}
}

// TestRunGracefulStop runs a whole agent with its own listener, and stops
// it by cancelling the context while a watch is open.
func TestRunGracefulStop(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP = "127.0.0.1:0"
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.HTTPAddr() == "" || strings.HasSuffix(a.HTTPAddr(), ":0") {
		t.Fatalf("HTTPAddr %q", a.HTTPAddr())
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	base := "http://" + a.HTTPAddr()
	resp, err := http.Get(base + "/v1/watch")
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer resp.Body.Close()
	r, err := http.Get(base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st StatusResponse
	err = json.NewDecoder(r.Body).Decode(&st)
	r.Body.Close()
	if err != nil || st.HTTPAddress != a.HTTPAddr() {
		t.Fatalf("status: %+v, %v", st, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The watch stream has ended, and the node is closed.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Logf("watch stream ended with %v", err)
	}
	if _, err := a.Node().Get(t.Context(), []byte("k")); !errors.Is(err, hearsay.ErrClosed) {
		t.Errorf("Get after Run: %v, want ErrClosed", err)
	}
	if _, err := http.Get(base + "/v1/status"); err == nil {
		t.Error("HTTP still answers after Run returned")
	}
}

func TestNewErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.Name = ""
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Errorf("New without name: %v", err)
	}

	// The HTTP port is taken: New fails and leaves nothing open.
	cfg = testConfig(t)
	cfg.HTTP = "127.0.0.1:0"
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cfg2 := testConfig(t)
	cfg2.Name = "t2"
	cfg2.HTTP = a.HTTPAddr()
	if _, err := New(cfg2); err == nil || !strings.Contains(err.Error(), "HTTP API (--http)") {
		t.Errorf("New on a taken HTTP port: %v", err)
	}
}

// TestBinaryKeys: keys are bytes end to end. Keys with NUL and invalid
// UTF-8 go in percent-encoded, come back base64 in "key" (with no
// "key_text"), and scan pages follow "next" without skipping or repeating
// any of them.
func TestBinaryKeys(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v1/watch?prefix=%FF", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan sseEvent, 16)
	go readEvents(resp.Body, events)

	keys := []string{"\x00", "\x00\x01", "a\xffb", "\xfe", "\xff", "\xff\x00", "\xff\xff"}
	for _, k := range keys {
		wantCode(t, do(t, srv, http.MethodPut, kvPath(k), "", []byte("v"+k)), http.StatusOK)
	}
	for _, k := range keys {
		r := do(t, srv, http.MethodGet, kvPath(k), "", nil)
		wantCode(t, r, http.StatusOK)
		e := decode[EntryJSON](t, r)
		text := ""
		if utf8.ValidString(k) {
			text = k // NUL is valid UTF-8: JSON escapes it exactly
		}
		if e.Key != b64(k) || e.KeyText != text || e.Value != b64("v"+k) {
			t.Errorf("get %q: %+v", k, e)
		}
		if text == "" && bytes.Contains(r.body, []byte("key_text")) {
			t.Errorf("get %q: key_text for a key that is not UTF-8: %s", k, r.body)
		}
	}
	var got []string
	cursor := ""
	for range 2 * len(keys) {
		q := url.Values{"limit": {"1"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		sr := decode[ScanResponse](t, do(t, srv, http.MethodGet, "/v1/kv?"+q.Encode(), "", nil))
		for _, e := range sr.Entries {
			k, err := DecodeKey(e.Key)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(k))
		}
		if cursor = sr.Next; cursor == "" {
			break
		}
	}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", keys) {
		t.Errorf("scan pages of 1: %q, want %q", got, keys)
	}
	sr := decode[ScanResponse](t, do(t, srv, http.MethodGet, "/v1/kv?prefix=%FF", "", nil))
	if len(sr.Entries) != 3 || sr.Entries[0].Key != b64("\xff") {
		t.Errorf("scan prefix \\xff: %+v", sr.Entries)
	}
	var ev EventJSON
	if err := json.Unmarshal([]byte(nextEvent(t, events).data), &ev); err != nil || ev.Key != b64("\xff") || ev.KeyText != "" {
		t.Errorf("watch event %+v (%v), want key \\xff", ev, err)
	}
	wantError(t, do(t, srv, http.MethodGet, kvPath("\xff\x01"), "", nil), http.StatusNotFound, `key "\xff\x01" not found`)
}

// TestKVRoutingMatchesMux checks that the kv routes, dispatched before the
// mux, answer as the mux would: the same 405 and Allow header for other
// methods, and the metrics label an unknown method "other" rather than
// making a time series of whatever a client sends.
func TestKVRoutingMatchesMux(t *testing.T) {
	mux := http.NewServeMux()
	for _, p := range []string{routeKVGet, routeKVPut, routeKVDelete} {
		mux.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/kv/k", nil))
	if got := rec.Header().Get("Allow"); got != kvAllow {
		t.Fatalf("the mux allows %q on a kv path, the agent says %q", got, kvAllow)
	}

	_, srv := newTestServer(t, testConfig(t))
	for _, m := range []string{"POST", "PATCH", "BREW"} {
		r := do(t, srv, m, kvPath("k"), "", nil)
		wantError(t, r, http.StatusMethodNotAllowed, "not allowed")
		if got := r.header.Get("Allow"); got != kvAllow {
			t.Errorf("%s: Allow %q, want %q", m, got, kvAllow)
		}
	}
	wantCode(t, do(t, srv, "HEAD", kvPath("missing"), "", nil), http.StatusNotFound)
	metrics := string(do(t, srv, "GET", "/metrics", "", nil).body)
	for _, want := range []string{
		`hearsay_http_requests_total{code="405",method="other",route="unmatched"} 1`,
		`hearsay_http_requests_total{code="405",method="PATCH",route="unmatched"} 1`,
		`hearsay_http_requests_total{code="404",method="HEAD",route="/v1/kv/{key...}"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, "BREW") {
		t.Errorf("a client's method became a label value")
	}
}
