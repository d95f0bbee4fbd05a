package agent

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/hearsaydb/hearsay"
)

// The dashboard: static files embedded in the binary (no CDN, no build
// step), served at /ui/, reading the JSON API and its event streams.
//
//go:embed ui
var uiFiles embed.FS

// StatsResponse is the body of GET /v1/stats, and the data of each "stats"
// event of GET /v1/stats?watch=1: the node's status, its member view (with
// outbox sizes and clock offsets) and its gossip traffic by mechanism.
type StatsResponse struct {
	Time    time.Time        `json:"time"`
	Status  StatusResponse   `json:"status"`
	Members []hearsay.Member `json:"members"`
	Traffic hearsay.Traffic  `json:"traffic"`
}

// SpreadResponse is the body of GET /v1/spread: what every member that
// answered holds of each key asked.
type SpreadResponse struct {
	Asked    int          `json:"asked"`
	Answered int          `json:"answered"`
	Keys     []SpreadJSON `json:"keys"`
}

// SpreadJSON is one key of a SpreadResponse: Newest is the newest version
// any member holds and Holding how many members hold it.
type SpreadJSON struct {
	// Key is the key, base64.
	Key string `json:"key"`
	// KeyText is the key as text, present only when it is valid UTF-8.
	KeyText string       `json:"key_text,omitempty"`
	Newest  string       `json:"newest,omitempty"`
	Holding int          `json:"holding"`
	Holders []HolderJSON `json:"holders"`
}

// HolderJSON is one member's answer for one key.
type HolderJSON struct {
	Member  string `json:"member"`
	Present bool   `json:"present"`
	Version string `json:"version,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	// Via is how that version reached the member: local, direct-mail,
	// rumor or anti-entropy; absent when it is too old to be remembered.
	Via string `json:"via,omitempty"`
}

// Stats stream pacing: ?interval= between these bounds, 1 s by default.
const (
	statsIntervalDefault = time.Second
	statsIntervalMin     = 250 * time.Millisecond
	statsIntervalMax     = time.Minute
)

func (a *Agent) stats() StatsResponse {
	members := a.node.Members()
	if members == nil {
		members = []hearsay.Member{}
	}
	return StatsResponse{
		Time:    time.Now().UTC(),
		Status:  a.statusResponse(),
		Members: members,
		Traffic: a.node.Traffic(),
	}
}

func (a *Agent) statusResponse() StatusResponse {
	return StatusResponse{
		Status:      a.node.Status(),
		Version:     a.cfg.BuildVersion,
		HTTPAddress: a.HTTPAddr(),
		Storage:     a.storage(),
		DataDir:     a.cfg.DataDir,
	}
}

// handleStats serves GET /v1/stats, or with ?watch=1 a "stats" event every
// ?interval= (Server-Sent Events): what the dashboard draws.
func (a *Agent) handleStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if v := q.Get("watch"); v != "1" && v != "true" {
		writeJSON(w, http.StatusOK, a.stats())
		return
	}
	every := statsIntervalDefault
	if v := q.Get("interval"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < statsIntervalMin || d > statsIntervalMax {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("interval %q: want a duration from %v to %v", v, statsIntervalMin, statsIntervalMax))
			return
		}
		every = d
	}
	if !a.acquireWatcher(w) {
		return
	}
	defer a.releaseWatcher()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ticks := make(chan StatsResponse)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case ticks <- a.stats():
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	streamSSE(a, ctx, w, "stats watch", streamEvent{"stats", a.stats()}, ticks,
		func(s StatsResponse) streamEvent { return streamEvent{"stats", s} }, "")
}

// handleSpread serves GET /v1/spread?key=K[&key=K…] (keys base64, at most
// hearsay.MaxSpreadKeys): asks every live member which version of each key
// it holds and how it arrived, and waits for the answers (?timeout=, 2 s
// by default, at most 10 s).
func (a *Agent) handleSpread(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	raw := q["key"]
	if len(raw) == 0 || len(raw) > hearsay.MaxSpreadKeys {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("give 1 to %d keys as ?key= (base64)", hearsay.MaxSpreadKeys))
		return
	}
	keys := make([][]byte, len(raw))
	for i, s := range raw {
		k, err := DecodeKey(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("key %d: %v", i+1, err))
			return
		}
		keys[i] = k
	}
	wait := 2 * time.Second
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 10*time.Second {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout %q: want a duration up to 10s", v))
			return
		}
		wait = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	rep, err := a.node.Spread(ctx, keys)
	if err != nil {
		if errors.Is(err, hearsay.ErrBusy) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		a.fail(w, r, "", err)
		return
	}
	out := SpreadResponse{Asked: rep.Asked, Answered: rep.Answered, Keys: make([]SpreadJSON, len(rep.Keys))}
	for i, ks := range rep.Keys {
		b64, text := EncodeKey(ks.Key)
		sj := SpreadJSON{Key: b64, KeyText: text, Holders: make([]HolderJSON, 0, len(ks.Holders))}
		var newest hearsay.Version
		for _, h := range ks.Holders {
			hj := HolderJSON{Member: h.Member, Present: h.Present, Deleted: h.Deleted, Via: h.Via}
			if h.Present {
				hj.Version = h.Version.String()
				if h.Version.Compare(newest) > 0 {
					newest = h.Version
				}
			}
			sj.Holders = append(sj.Holders, hj)
		}
		if !newest.IsZero() {
			sj.Newest = newest.String()
			sj.Holding = ks.Holds(newest)
		}
		out.Keys[i] = sj
	}
	writeJSON(w, http.StatusOK, out)
}

// uiHandler serves the embedded dashboard under /ui/.
func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
