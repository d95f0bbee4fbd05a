package agent

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestStatsAndSpread(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	put := do(t, srv, "PUT", kvPath("k"), "", []byte("v"))
	wantCode(t, put, http.StatusOK)
	kv := decode[KeyVersion](t, put)

	st := decode[StatsResponse](t, do(t, srv, "GET", "/v1/stats", "", nil))
	if st.Status.Name != "t1" || len(st.Members) != 1 || !st.Members[0].Self {
		t.Errorf("stats: %+v", st)
	}
	for _, m := range []string{"direct-mail", "rumor", "anti-entropy", "membership", "observation"} {
		if _, ok := st.Traffic[m]; !ok {
			t.Errorf("stats traffic lacks %s: %v", m, st.Traffic)
		}
	}

	sp := decode[SpreadResponse](t, do(t, srv, "GET", "/v1/spread?key="+url.QueryEscape(b64("k"))+"&key="+url.QueryEscape(b64("absent")), "", nil))
	if sp.Asked != 1 || sp.Answered != 1 || len(sp.Keys) != 2 {
		t.Fatalf("spread: %+v", sp)
	}
	k := sp.Keys[0]
	if k.KeyText != "k" || k.Newest != kv.Version || k.Holding != 1 || len(k.Holders) != 1 ||
		k.Holders[0].Via != "local" || !k.Holders[0].Present {
		t.Errorf("spread of k: %+v", k)
	}
	if a := sp.Keys[1]; a.Holding != 0 || a.Newest != "" || a.Holders[0].Present {
		t.Errorf("spread of an absent key: %+v", a)
	}

	wantError(t, do(t, srv, "GET", "/v1/spread", "", nil), 400, "1 to 64 keys")
	wantError(t, do(t, srv, "GET", "/v1/spread?key=%25%25", "", nil), 400, "base64")
	wantError(t, do(t, srv, "GET", "/v1/spread?key=aw==&timeout=1h", "", nil), 400, "timeout")
	wantError(t, do(t, srv, "GET", "/v1/stats?watch=1&interval=1ms", "", nil), 400, "interval")
}

func TestStatsWatchStreams(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	resp, err := srv.Client().Get(srv.URL + "/v1/stats?watch=1&interval=250ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	ch := make(chan sseEvent, 16)
	go readEvents(resp.Body, ch)
	var times []string
	for range 3 {
		ev := nextEvent(t, ch)
		if ev.name != "stats" {
			t.Fatalf("event %q, want stats", ev.name)
		}
		var s StatsResponse
		if err := json.Unmarshal([]byte(ev.data), &s); err != nil {
			t.Fatal(err)
		}
		times = append(times, s.Time.String())
	}
	if times[0] == times[2] {
		t.Errorf("stats did not move on: %v", times)
	}
}

func TestDashboardServed(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	r := do(t, srv, "GET", "/ui/", "", nil)
	wantCode(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `<script src="app.js"`) {
		t.Errorf("/ui/ is not the dashboard: %.200s", r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for _, f := range []string{"/ui/app.js", "/ui/style.css"} {
		wantCode(t, do(t, srv, "GET", f, "", nil), http.StatusOK)
	}
	// /ui redirects to /ui/ (the client follows it).
	wantCode(t, do(t, srv, "GET", "/ui", "", nil), http.StatusOK)
}
