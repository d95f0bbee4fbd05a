package agent

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deadAddr returns a loopback gossip address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

type serverUnderTest struct {
	a   *Agent
	srv *httptest.Server
}

// newUnreadyServer is newTestServer without waiting for readiness.
func newUnreadyServer(t *testing.T, cfg Config) *serverUnderTest {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		_ = a.Close()
		srv.Close()
	})
	return &serverUnderTest{a: a, srv: srv}
}

func TestHealthLiveAndReady(t *testing.T) {
	_, seed := newTestServer(t, testConfig(t))
	r := do(t, seed, http.MethodGet, "/v1/health/live", "", nil)
	wantCode(t, r, http.StatusOK)
	if got := decode[LiveResponse](t, r); got.Status != "live" {
		t.Errorf("live: %s", r.body)
	}
	r = do(t, seed, http.MethodGet, "/v1/health/ready", "", nil)
	wantCode(t, r, http.StatusOK)
	if got := decode[ReadyResponse](t, r); !got.Ready || len(got.Reasons) != 0 {
		t.Errorf("ready: %s", r.body)
	}
	wantError(t, do(t, seed, http.MethodGet, "/v1/health", "", nil), http.StatusNotFound, "/v1/health/ready")
	wantError(t, do(t, seed, http.MethodPost, "/v1/health/ready", "", nil), http.StatusMethodNotAllowed, "GET")
}

// TestHealthNotJoined: an agent whose seed does not answer is live but not
// ready, says why in /v1/health/ready and /v1/status, and turns ready once
// it joins a live seed.
func TestHealthNotJoined(t *testing.T) {
	seedAgent, _ := newTestServer(t, testConfig(t))

	cfg := testConfig(t)
	cfg.Name = "t2"
	cfg.Join = []string{deadAddr(t)}
	s := newUnreadyServer(t, cfg)
	wantCode(t, do(t, s.srv, http.MethodGet, "/v1/health/live", "", nil), http.StatusOK)
	r := do(t, s.srv, http.MethodGet, "/v1/health/ready", "", nil)
	wantCode(t, r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	got := decode[ReadyResponse](t, r)
	if got.Ready || len(got.Reasons) == 0 || !strings.Contains(strings.Join(got.Reasons, "; "), "not joined") {
		t.Errorf("ready: %s", r.body)
	}
	st := decode[StatusResponse](t, do(t, s.srv, http.MethodGet, "/v1/status", "", nil))
	if st.Joined || st.Ready || !st.Serving || len(st.NotReady) == 0 {
		t.Errorf("status %+v", st)
	}

	if _, err := s.a.Node().Join(t.Context(), []string{seedAgent.Node().Status().Address}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "ready after joining", func() bool {
		return do(t, s.srv, http.MethodGet, "/v1/health/ready", "", nil).code == http.StatusOK
	})
}

// TestHealthRefusedByKey: a joiner whose seed has another key, or none, is
// not ready, and its last join error says the seed refused it for the key.
func TestHealthRefusedByKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := func(name string, b byte) string {
		p := filepath.Join(dir, name)
		k := strings.Repeat(string(rune('A'+b)), 43) + "="
		if err := os.WriteFile(p, []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name               string
		seedKey, joinerKey string
	}{
		{"other key", keyFile("a", 0), keyFile("b", 1)},
		{"joiner without key", keyFile("c", 2), ""},
		{"seed without key", "", keyFile("d", 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scfg := testConfig(t)
			scfg.SecretKeyFile = tc.seedKey
			seed, _ := newTestServer(t, scfg)
			cfg := testConfig(t)
			cfg.Name = "t2"
			cfg.SecretKeyFile = tc.joinerKey
			cfg.Join = []string{seed.Node().Status().Address}
			s := newUnreadyServer(t, cfg)
			var st StatusResponse
			waitFor(t, 10*time.Second, "a join error", func() bool {
				st = decode[StatusResponse](t, do(t, s.srv, http.MethodGet, "/v1/status", "", nil))
				return st.LastJoinError != ""
			})
			t.Logf("last_join_error: %s", st.LastJoinError)
			if st.Joined || st.Ready || !strings.Contains(st.LastJoinError, "refused") || !strings.Contains(st.LastJoinError, "key") {
				t.Errorf("status %+v", st)
			}
			r := do(t, s.srv, http.MethodGet, "/v1/health/ready", "", nil)
			wantCode(t, r, http.StatusServiceUnavailable)
			if !strings.Contains(string(r.body), st.LastJoinError) {
				t.Errorf("ready %s lacks the join error %q", r.body, st.LastJoinError)
			}
		})
	}
}
