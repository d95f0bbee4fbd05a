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
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/store"
)

// Limits of the HTTP API.
const (
	// DefaultScanLimit is the page size of a scan without ?limit=.
	DefaultScanLimit = 1000
	// MaxScanLimit is the largest page a scan returns; a larger ?limit= is
	// refused with 400, and the response's "next" tells where to go on.
	MaxScanLimit = 10000
	// HeartbeatInterval is how often a watch stream sends a comment line,
	// so that proxies and clients see the connection alive.
	HeartbeatInterval = 15 * time.Second
	// VersionHeader carries the version of a raw (octet-stream) read.
	VersionHeader = "X-Hearsay-Version"
	// AbsentHeader is set ("true") on the 404 of a key that is absent, so
	// that a client tells an absent key from a route that does not exist.
	AbsentHeader = "X-Hearsay-Absent"
	// ServerHeader is the Server header of every response: "hearsay" and
	// the agent's version. Clients check it to know they talk to hearsay.
	ServerHeader = "hearsay"

	kvPrefix     = "/v1/kv/"
	jsonOverhead = 4 << 10 // room for {"value":...} and whitespace around the base64
)

// Keys are bytes: every JSON document carries a key base64-encoded
// (standard alphabet, padded) in "key", and repeats it as text in
// "key_text" only when the key is valid UTF-8, so that no key is altered
// by JSON's strings (which turn invalid UTF-8 into U+FFFD).

// KeyVersion is the response to a write or delete.
type KeyVersion struct {
	// Key is the key, base64.
	Key string `json:"key"`
	// KeyText is the key as text, present only when it is valid UTF-8.
	KeyText string `json:"key_text,omitempty"`
	Version string `json:"version"`
}

// EntryJSON is a key (base64, and as text when valid UTF-8), its value
// (base64) and its version, as returned by reads and scans.
type EntryJSON struct {
	// Key is the key, base64.
	Key string `json:"key"`
	// KeyText is the key as text, present only when it is valid UTF-8.
	KeyText string `json:"key_text,omitempty"`
	Value   string `json:"value"`
	Version string `json:"version"`
}

// ScanResponse is the response to GET /v1/kv. When Next is not empty there
// may be more entries: ask again with cursor=Next (and the same prefix).
type ScanResponse struct {
	Entries []EntryJSON `json:"entries"`
	// Next is the first key of the next page, base64: an opaque cursor
	// to pass back as ?cursor=.
	Next string `json:"next,omitempty"`
}

// EventJSON is the data of a watch event.
type EventJSON struct {
	// Key is the key, base64.
	Key string `json:"key"`
	// KeyText is the key as text, present only when it is valid UTF-8.
	KeyText string `json:"key_text,omitempty"`
	Value   string `json:"value"`
	Version string `json:"version"`
	Deleted bool   `json:"deleted"`
	// Revision is the agent's revision of the change, also the event's
	// SSE id; absent (0) in the events of a snapshot.
	Revision uint64 `json:"revision,omitempty"`
	// Snapshot marks a current record sent by a snapshot rather than a
	// change (see SnapshotEndJSON).
	Snapshot bool `json:"snapshot,omitempty"`
}

// SnapshotEndJSON is the data of the "snapshot-end" watch event, whose id
// is its revision. A watch resumed from a revision the agent's change log
// no longer holds (or given by another node) sends, instead of the
// changes, a snapshot: a "put" or "delete" event with "snapshot": true and
// no id for each record under the prefix (tombstones included), then
// "snapshot-end". Keys absent from the snapshot have no record; the
// changes after Revision follow.
type SnapshotEndJSON struct {
	SnapshotEnd bool   `json:"snapshot_end"`
	Revision    uint64 `json:"revision"`
}

// Watch resumption (GET /v1/watch).
const (
	// NodeIDHeader names the agent's node id in a watch response: a
	// client resuming later passes it back as ?node_id= with the last
	// event id, since revisions are numbered by each node on its own.
	NodeIDHeader = "Hearsay-Node-Id"
	// EventSnapshotEnd is the name of the event that ends a snapshot.
	EventSnapshotEnd = "snapshot-end"
)

// EncodeKey returns the JSON forms of a key: base64 (the "key" and "next"
// fields), and the text, or "" when the key is not valid UTF-8 (the
// "key_text" field).
func EncodeKey(key []byte) (b64, text string) {
	b64 = base64.StdEncoding.EncodeToString(key)
	if utf8.Valid(key) {
		text = string(key)
	}
	return b64, text
}

// DecodeKey decodes a key or cursor of the JSON API (base64, standard
// alphabet, padded or not).
func DecodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if raw, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
			return raw, nil
		}
		return nil, fmt.Errorf("not base64 (standard alphabet): %w", err)
	}
	return b, nil
}

// QuoteKey quotes a key for a message: Go syntax (invalid UTF-8 and
// control bytes escaped), cut after 64 bytes with the full length said,
// so that a 1 KiB key does not flood a log line or a terminal.
func QuoteKey(key []byte) string {
	const show = 64
	if len(key) <= show {
		return strconv.Quote(string(key))
	}
	cut := show
	for cut > show-utf8.UTFMax && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(string(key[:cut])), len(key))
}

// StatusResponse is the response to GET /v1/status.
type StatusResponse struct {
	hearsay.Status
	// Version is the agent's build version.
	Version string `json:"version"`
	// HTTPAddress is the address of the HTTP API.
	HTTPAddress string `json:"http_address"`
	// Storage is where the replica lives: "disk" (in DataDir) or
	// "memory" (--in-memory: a restart loses it).
	Storage string `json:"storage"`
	// DataDir is the data directory, empty in memory.
	DataDir string `json:"data_dir,omitempty"`
}

// Storage values of StatusResponse.
const (
	StorageDisk   = "disk"
	StorageMemory = "memory"
)

// LiveResponse is the response to GET /v1/health/live.
type LiveResponse struct {
	Status string `json:"status"` // "live"
}

// ReadyResponse is the response to GET /v1/health/ready: 200 with Ready
// true when the node is joined, caught up and writable, 503 with the
// reasons otherwise.
type ReadyResponse struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

// ErrorResponse is the body of every error response.
type ErrorResponse struct {
	Error string `json:"error"`
}

// routes builds the API handler: a ServeMux of method patterns behind a
// front that records metrics, keeps keys out of path cleaning and turns the
// mux's own 404 and 405 replies into JSON errors.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	// The kv routes under /v1/kv/ are dispatched before the mux (kvHandler).
	mux.HandleFunc("GET /v1/kv", a.handleScan)
	mux.HandleFunc("GET /v1/watch", a.handleWatch)
	mux.HandleFunc("GET /v1/members", a.handleMembers)
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("GET /v1/health/live", a.handleLive)
	mux.HandleFunc("GET /v1/health/ready", a.handleReady)
	mux.HandleFunc("POST /v1/revocations", a.handleRevoke)
	mux.HandleFunc("GET /v1/revocations", a.handleRevocations)
	mux.HandleFunc("GET /v1/keys", a.handleKeysList)
	mux.HandleFunc("POST /v1/keys", a.handleKeyInstall)
	mux.HandleFunc("PUT /v1/keys/primary", a.handleKeyUse)
	mux.HandleFunc("DELETE /v1/keys/{id}", a.handleKeyRemove)
	mux.HandleFunc("GET /v1/stats", a.handleStats)
	mux.HandleFunc("GET /v1/spread", a.handleSpread)
	mux.Handle("GET /ui/", uiHandler())
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		Registry: a.registry,
	}))

	server := []string{a.serverHeader}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// Set directly: the name is canonical already.
		w.Header()["Server"] = server
		a.metrics.inflight.Inc()
		defer a.metrics.inflight.Dec()
		// A body, read by a handler or drained after it, must arrive within
		// the read timeout (issue 11: trickled bodies held connections
		// forever). Watches lift it: they read nothing.
		_ = http.NewResponseController(w).SetReadDeadline(start.Add(a.cfg.Bounds.HTTPReadTimeout))

		var h http.Handler
		var route string
		if strings.HasPrefix(r.URL.EscapedPath(), kvPrefix) {
			// Keys are arbitrary bytes: "a//b" or "x/../y" are keys, not
			// paths to clean, so kv requests do not go through the mux
			// (which would clean them); the handlers read the key from the
			// escaped path. This is also the hot path: no request clone,
			// no pattern matching.
			h, route = a.kvHandler(r.Method)
		} else {
			h, route = mux.Handler(r)
			if r.URL.Path == "/v1/kv" && r.Method != http.MethodGet && r.Method != http.MethodHead {
				// Not a redirect to /v1/kv/ (the empty key): scan is GET only.
				h, route = methodNotAllowed("GET, HEAD"), ""
			}
		}
		if route == "" {
			route = "unmatched"
			h = jsonMuxError(h)
		}
		h = a.authorize(h, route)
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		code := sw.status()
		// The metric's route is the pattern's path: its method is a label
		// of its own.
		_, path, ok := strings.Cut(route, " ")
		if !ok {
			path = route
		}
		took := time.Since(start)
		a.metrics.observe(path, r.Method, code, took)
		if a.log.Enabled(r.Context(), slog.LevelDebug) {
			a.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "route", route,
				"code", code, "duration", took, "remote", r.RemoteAddr)
		}
	})
}

// The kv routes, as the mux would name them.
const (
	routeKVGet    = "GET " + kvPrefix + "{key...}"
	routeKVPut    = "PUT " + kvPrefix + "{key...}"
	routeKVDelete = "DELETE " + kvPrefix + "{key...}"
	kvAllow       = "DELETE, GET, HEAD, PUT"
)

// kvHandler routes a request under /v1/kv/ by its method, with the route
// names and the 405 answer the mux gives.
func (a *Agent) kvHandler(method string) (http.Handler, string) {
	switch method {
	case http.MethodGet, http.MethodHead:
		return a.kv.get, routeKVGet
	case http.MethodPut:
		return a.kv.put, routeKVPut
	case http.MethodDelete:
		return a.kv.del, routeKVDelete
	}
	return methodNotAllowed(kvAllow), ""
}

// kvHandlers are the kv handlers as http.Handlers, made once rather than
// as method values on every request.
type kvHandlers struct{ get, put, del http.Handler }

// Header values shared by every response that sends them (net/http only
// reads them).
var (
	octetStream     = []string{"application/octet-stream"}
	applicationJSON = []string{"application/json"}
)

// methodNotAllowed answers 405 with an Allow header, as the mux does.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		w.WriteHeader(http.StatusMethodNotAllowed)
	})
}

// jsonMuxError runs the mux's not-found or method-not-allowed handler on a
// recorder and answers the same status (and Allow header) as JSON.
func jsonMuxError(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		code := rec.status()
		if allow := rec.Header().Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		var msg string
		switch code {
		case http.StatusMethodNotAllowed:
			msg = fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.Header().Get("Allow"))
		case http.StatusNotFound:
			msg = fmt.Sprintf("no such endpoint: %s %s (see /v1/kv, /v1/watch, /v1/members, /v1/status, /v1/stats, /v1/spread, /v1/keys, /v1/health/live, /v1/health/ready, /metrics, /ui/)", r.Method, r.URL.Path)
		default:
			msg = strings.TrimSpace(rec.body.String())
			if msg == "" {
				msg = http.StatusText(code)
			}
		}
		writeError(w, code, msg)
	})
}

// recorder captures what the mux's fallback handlers write.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// keyOf returns the key of a /v1/kv/{key...} request, unescaped from the
// raw path so that escaped slashes and dots survive.
func keyOf(r *http.Request) (string, error) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), kvPrefix)
	if !ok {
		return "", errors.New("not a key path")
	}
	key, err := url.PathUnescape(rest)
	if err != nil {
		return "", fmt.Errorf("bad key escaping in path: %w", err)
	}
	return key, nil
}

// requireKey reads the request's key, answering 400 or 413 itself when the
// key is unusable.
func (a *Agent) requireKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key, err := keyOf(r)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	case key == "":
		writeError(w, http.StatusBadRequest, "empty key: use /v1/kv/<key>")
		return "", false
	case len(key) > store.MaxKeySize:
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("key too large: %d bytes, the limit is %d (key %s)", len(key), store.MaxKeySize, QuoteKey([]byte(key))))
		return "", false
	}
	return key, true
}

func (a *Agent) handleGet(w http.ResponseWriter, r *http.Request) {
	key, ok := a.requireKey(w, r)
	if !ok {
		return
	}
	e, err := a.node.Get(r.Context(), []byte(key))
	if err != nil {
		a.fail(w, r, key, err)
		return
	}
	if wantsRaw(r.Header.Get("Accept")) {
		// Canonical names, set directly: Header.Set would canonicalise
		// and allocate each.
		h := w.Header()
		h["Content-Type"] = octetStream
		h["Content-Length"] = []string{strconv.Itoa(len(e.Value))}
		h[VersionHeader] = []string{e.Version.String()}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(e.Value)
		}
		return
	}
	writeJSON(w, http.StatusOK, entryJSON(e))
}

func (a *Agent) handlePut(w http.ResponseWriter, r *http.Request) {
	key, ok := a.requireKey(w, r)
	if !ok {
		return
	}
	isJSON := isJSONType(r.Header.Get("Content-Type"))
	limit := int64(a.cfg.MaxValueSize)
	if isJSON {
		limit = int64(base64.StdEncoding.EncodedLen(a.cfg.MaxValueSize)) + jsonOverhead
	}
	tooLarge := func() string {
		return fmt.Sprintf("value too large: the limit is %d bytes (agent --max-value-size)", a.cfg.MaxValueSize)
	}
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, tooLarge())
		return
	}
	data, release, err := a.readBody(w, r, limit)
	defer release()
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, tooLarge())
		case errors.Is(err, errBodyBusy):
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusServiceUnavailable, err.Error())
		case errors.Is(err, errBodyTimeout):
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, err.Error())
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
		}
		return
	}
	value := data
	if isJSON {
		if value, err = decodePutJSON(data); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	v, err := a.node.Put(r.Context(), []byte(key), value)
	if err != nil {
		a.fail(w, r, key, err)
		return
	}
	writeJSON(w, http.StatusOK, keyVersion([]byte(key), v))
}

// keyVersion is the response to a write or delete of key.
func keyVersion(key []byte, v store.Version) KeyVersion {
	b64, text := EncodeKey(key)
	return KeyVersion{Key: b64, KeyText: text, Version: v.String()}
}

// decodePutJSON decodes a {"value": "<base64>"} body.
func decodePutJSON(data []byte) ([]byte, error) {
	var req struct {
		Value *string `json:"value"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf(`malformed JSON body (want {"value": "<base64>"}): %v`, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New(`malformed JSON body: data after the object (want {"value": "<base64>"})`)
	}
	if req.Value == nil {
		return nil, errors.New(`JSON body has no "value" (want {"value": "<base64>"})`)
	}
	value, err := base64.StdEncoding.DecodeString(*req.Value)
	if err != nil {
		if raw, err2 := base64.RawStdEncoding.DecodeString(*req.Value); err2 == nil {
			return raw, nil
		}
		return nil, fmt.Errorf(`"value" is not valid base64 (standard alphabet): %v`, err)
	}
	return value, nil
}

func (a *Agent) handleDelete(w http.ResponseWriter, r *http.Request) {
	key, ok := a.requireKey(w, r)
	if !ok {
		return
	}
	v, err := a.node.Delete(r.Context(), []byte(key))
	if err != nil {
		a.fail(w, r, key, err)
		return
	}
	writeJSON(w, http.StatusOK, keyVersion([]byte(key), v))
}

func (a *Agent) handleScan(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultScanLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxScanLimit {
			writeError(w, http.StatusBadRequest,
				fmt.Sprintf("bad limit %q: want a whole number from 1 to %d (follow \"next\" for more)", s, MaxScanLimit))
			return
		}
		limit = n
	}
	// prefix and start are raw bytes, percent-encoded in the query;
	// cursor is a "next" of an earlier page (base64), and wins over start.
	prefix, start := q.Get("prefix"), []byte(q.Get("start"))
	if c := q.Get("cursor"); c != "" {
		var err error
		if start, err = DecodeKey(c); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("bad cursor %q: %v", c, err))
			return
		}
	}
	entries, err := a.node.Scan(r.Context(), []byte(prefix), start, limit+1)
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	resp := ScanResponse{Entries: make([]EntryJSON, 0, min(len(entries), limit))}
	if len(entries) > limit {
		resp.Next, _ = EncodeKey(entries[limit].Key)
		entries = entries[:limit]
	}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, entryJSON(e))
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleWatch serves GET /v1/watch?prefix=P[&since=REV][&node_id=ID] as
// Server-Sent Events, each change's id its revision. With a Last-Event-ID
// header (an EventSource reconnecting; it wins over since=) or since=, the
// stream starts with the changes after that revision, from the change log,
// or with a snapshot when the log no longer reaches back or node_id names
// another node. Without either, it starts from now, and the greeting
// carries the current revision as its id, so that a client that reconnects
// before the first change misses nothing either.
func (a *Agent) handleWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	since, resume, err := watchSince(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	nodeID := q.Get("node_id")
	if nodeID != "" && !isNodeID(nodeID) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad node_id %.40q: want the 16 hex digits of a node id (the %s header of a watch)", nodeID, NodeIDHeader))
		return
	}
	if !a.acquireWatcher(w) {
		return
	}
	defer a.releaseWatcher()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var opts []hearsay.WatchOption
	if resume {
		opts = append(opts, hearsay.SinceNode(nodeID, since))
	}
	events, err := a.node.Watch(ctx, []byte(prefix), opts...)
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	greeting := streamEvent{data: fmt.Sprintf("watching prefix %q", prefix)}
	var from uint64 // live events at or below it are skipped
	if resume {
		greeting.data = fmt.Sprintf("watching prefix %q from revision %d", prefix, since)
	} else {
		// Registered before the read: every change after it will come.
		from = a.node.Revision()
		greeting.id = strconv.FormatUint(from, 10)
	}
	w.Header().Set(NodeIDHeader, a.node.Status().NodeID)
	a.log.Debug("watch started", "prefix", prefix, "since", since, "resume", resume, "remote", r.RemoteAddr)
	defer a.log.Debug("watch ended", "prefix", prefix, "remote", r.RemoteAddr)
	streamSSE(a, ctx, w, "watch", greeting, events,
		func(ev hearsay.Event) streamEvent {
			if ev.Revision != 0 && ev.Revision <= from {
				return streamEvent{}
			}
			id := ""
			if ev.Revision != 0 {
				id = strconv.FormatUint(ev.Revision, 10)
			}
			if ev.Snapshot && ev.Key == nil {
				return streamEvent{name: EventSnapshotEnd, data: SnapshotEndJSON{SnapshotEnd: true, Revision: ev.Revision}, id: id}
			}
			name := "put"
			if ev.Deleted {
				name = "delete"
			}
			b64, text := EncodeKey(ev.Key)
			return streamEvent{name: name, id: id, data: EventJSON{
				Key:      b64,
				KeyText:  text,
				Value:    base64.StdEncoding.EncodeToString(ev.Value),
				Version:  ev.Version.String(),
				Deleted:  ev.Deleted,
				Revision: ev.Revision,
				Snapshot: ev.Snapshot,
			}}
		}, "watch fell behind and was dropped; watch again with the last event id (Last-Event-ID or since=) to resume")
}

// watchSince returns the revision a watch resumes from: the Last-Event-ID
// header's, else the since parameter's; resume is false with neither.
func watchSince(r *http.Request) (since uint64, resume bool, err error) {
	v, what := r.Header.Get("Last-Event-ID"), "Last-Event-ID header"
	if v == "" {
		v, what = r.URL.Query().Get("since"), "since"
	}
	if v == "" {
		return 0, false, nil
	}
	since, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("bad %s %.40q: want a revision, a whole number from 0 (the id of a watch event)", what, v)
	}
	return since, true, nil
}

// isNodeID reports whether s is a node id as the API prints them: 16
// lowercase hex digits.
func isNodeID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (a *Agent) handleMembers(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query().Get("watch"); q == "1" || q == "true" {
		a.watchMembers(w, r)
		return
	}
	members := a.node.Members()
	if members == nil {
		members = []hearsay.Member{}
	}
	writeJSON(w, http.StatusOK, members)
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.statusResponse())
}

// storage is StorageDisk or StorageMemory.
func (a *Agent) storage() string {
	if a.cfg.DataDir == "" {
		return StorageMemory
	}
	return StorageDisk
}

// handleLive answers 200 while the process serves HTTP: a liveness probe
// that fails only when the agent is wedged or gone.
func (a *Agent) handleLive(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, LiveResponse{Status: "live"})
}

// handleReady answers 200 when the node is ready (joined, caught up and
// writable) and 503 with the reasons otherwise: a readiness probe.
func (a *Agent) handleReady(w http.ResponseWriter, r *http.Request) {
	st := a.node.Status()
	if st.Ready {
		writeJSON(w, http.StatusOK, ReadyResponse{Ready: true})
		return
	}
	reasons := st.NotReady
	if len(reasons) == 0 {
		reasons = []string{"not ready"}
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, ReadyResponse{Ready: false, Reasons: reasons})
}

// fail answers err from the node with the status it calls for.
func (a *Agent) fail(w http.ResponseWriter, r *http.Request, key string, err error) {
	code := StatusCode(err)
	msg := err.Error()
	switch {
	case code == http.StatusNotFound && key != "":
		w.Header().Set(AbsentHeader, "true")
		msg = fmt.Sprintf("key %s not found", QuoteKey([]byte(key)))
	case code == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	if code >= 500 && r.Context().Err() == nil {
		a.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	writeError(w, code, msg)
}

// StatusCode maps an error of package hearsay to an HTTP status code.
func StatusCode(err error) int {
	if code, ok := revocationStatus(err); ok {
		return code
	}
	switch {
	case errors.Is(err, hearsay.ErrEmptyKey):
		return http.StatusBadRequest
	case errors.Is(err, hearsay.ErrKeyTooLarge), errors.Is(err, hearsay.ErrValueTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, hearsay.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, hearsay.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, hearsay.ErrNotReady), errors.Is(err, hearsay.ErrClosed), errors.Is(err, hearsay.ErrStorageFailed), errors.Is(err, hearsay.ErrClockOffset):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func entryJSON(e hearsay.Entry) EntryJSON {
	b64, text := EncodeKey(e.Key)
	return EntryJSON{
		Key:     b64,
		KeyText: text,
		Value:   base64.StdEncoding.EncodeToString(e.Value),
		Version: e.Version.String(),
	}
}

// wantsRaw reports whether an Accept header prefers raw bytes to JSON: the
// first of application/octet-stream and application/json listed wins.
func wantsRaw(accept string) bool {
	switch accept { // the common cases, without parsing
	case "application/octet-stream":
		return true
	case "", "*/*", "application/json":
		return false
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/octet-stream":
			return true
		case "application/json":
			return false
		}
	}
	return false
}

// isJSONType reports whether a Content-Type is JSON.
func isJSONType(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encoding response: %v", err))
		return
	}
	h := w.Header()
	h["Content-Type"] = applicationJSON
	h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(ErrorResponse{Error: msg}) // a string always encodes
	body := buf.Bytes()
	h := w.Header()
	h.Del(VersionHeader)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
