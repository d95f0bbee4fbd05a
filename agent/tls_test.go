package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/certs"
)

// testCerts makes a certs directory: a CA, node n1 (loopback hosts) and
// clients reader, writer and admin with those roles.
func testCerts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	o := certs.Options{Dir: dir}
	if _, err := certs.CreateCA(o); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.CreateNode(o, "n1", nil); err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]certs.Role{"reader": certs.RoleRead, "writer": certs.RoleWrite, "admin": certs.RoleAdmin} {
		if _, err := certs.CreateClient(o, name, role); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runTLSAgent runs an agent with the certs directory on a loopback HTTPS
// listener until the test ends, and waits until it is ready.
func runTLSAgent(t *testing.T, dir string) *Agent {
	t.Helper()
	return runTLSAgentWith(t, dir, nil)
}

// runTLSAgentWith is runTLSAgent with the configuration changed by edit.
func runTLSAgentWith(t *testing.T, dir string, edit func(*Config)) *Agent {
	t.Helper()
	cfg := testConfig(t)
	cfg.Name = "" // taken from node.crt
	cfg.CertsDir = dir
	cfg.HTTP = "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "node ready", func() bool { return a.Node().Status().Ready })
	return a
}

// tlsClient is an HTTPS client trusting dir's CA and presenting client
// name's certificate ("" presents none).
func tlsClient(t *testing.T, dir, name string) *http.Client {
	t.Helper()
	var tc *tls.Config
	if name == "" {
		ca, err := certs.LoadCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		tc = &tls.Config{RootCAs: certs.Node{CA: ca}.Pool(), MinVersion: tls.VersionTLS13}
	} else {
		var err error
		if tc, err = certs.ClientTLS(dir, name, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// call sends one request and returns its reply, or the transport error.
func call(t *testing.T, c *http.Client, method, url string, body string) (reply, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: data}, nil
}

func TestTLSRoles(t *testing.T) {
	dir := testCerts(t)
	a := runTLSAgent(t, dir)
	if a.cfg.Name != "n1" || a.Node().Status().Name != "n1" {
		t.Fatalf("name %q, want n1 from node.crt", a.Node().Status().Name)
	}
	base := "https://" + a.HTTPAddr()
	if _, err := call(t, tlsClient(t, dir, "writer"), "PUT", base+"/v1/kv/k", "v"); err != nil {
		t.Fatal(err)
	}

	// What each caller gets on each route: 0 is "allowed" (any 2xx, or
	// 404 for an unknown path).
	type route struct{ method, path string }
	routes := []route{
		{"GET", "/v1/kv/k"}, {"GET", "/v1/kv?prefix=k"}, {"GET", "/v1/members"}, {"GET", "/v1/status"},
		{"GET", "/metrics"}, {"PUT", "/v1/kv/k"}, {"DELETE", "/v1/kv/gone"},
		{"GET", "/v1/health/live"}, {"GET", "/v1/health/ready"}, {"GET", "/v1/nope"},
	}
	want := map[string][]int{
		"":       {401, 401, 401, 401, 401, 401, 401, 0, 0, 401},
		"reader": {0, 0, 0, 0, 0, 403, 403, 0, 0, 0},
		"writer": {0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"admin":  {0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for who, codes := range want {
		c := tlsClient(t, dir, who)
		for i, rt := range routes {
			r, err := call(t, c, rt.method, base+rt.path, "v2")
			if err != nil {
				t.Fatalf("%q: %s %s: %v", who, rt.method, rt.path, err)
			}
			switch {
			case codes[i] == 0 && (r.code/100 == 2 || r.code == 404 && rt.path == "/v1/nope"):
			case codes[i] == r.code:
				wantError(t, r, codes[i], map[int]string{401: "a client certificate is required", 403: `client "reader" has role read`}[r.code])
			default:
				t.Errorf("%q: %s %s: %d %s, want %d", who, rt.method, rt.path, r.code, r.body, codes[i])
			}
		}
	}
	if got := refusedCount(t, a, refusedNoCertificate); got != 8 {
		t.Errorf("refused no_certificate = %v, want 8", got)
	}
	if got := refusedCount(t, a, refusedRole); got != 2 {
		t.Errorf("refused role = %v, want 2", got)
	}

	// A watch with a read role streams.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/watch?prefix=k", nil)
	resp, err := tlsClient(t, dir, "reader").Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("watch as reader: %v %v", resp, err)
	}
	resp.Body.Close()

	// Plain HTTP to the TLS port is not served.
	r, err := call(t, &http.Client{Timeout: 5 * time.Second}, "GET", "http://"+a.HTTPAddr()+"/v1/status", "")
	if err != nil || r.code != http.StatusBadRequest {
		t.Errorf("plain HTTP: %d %s %v, want 400", r.code, r.body, err)
	}
}

func TestTLSRefusesStrangers(t *testing.T) {
	dir := testCerts(t)
	a := runTLSAgent(t, dir)
	base := "https://" + a.HTTPAddr()

	// A client of another CA, even an admin, is refused in the handshake.
	other := testCerts(t)
	otherTLS, err := certs.ClientTLS(other, "admin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := certs.LoadCA(dir)
	otherTLS.RootCAs = certs.Node{CA: ca}.Pool() // it trusts our server
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: otherTLS}, Timeout: 10 * time.Second}
	_, err = call(t, c, "PUT", base+"/v1/kv/k", "v")
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("client of another CA: %v, want a bad certificate alert", err)
	}
	if got := refusedCount(t, a, refusedBadCertificate); got != 1 {
		t.Errorf("refused bad_certificate = %v, want 1", got)
	}

	// A server of another CA is not trusted by our clients.
	_, err = call(t, tlsClient(t, other, "admin"), "GET", base+"/v1/status", "")
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("server of another CA: %v, want unknown authority", err)
	}

	// An expired client certificate is refused in the handshake.
	// (Valid from 110 to 40 minutes ago; the CA from an hour ago.)
	made := time.Now().Add(-50 * time.Minute)
	if _, err := certs.CreateClient(certs.Options{Dir: dir, Validity: 10 * time.Minute, Now: func() time.Time { return made }}, "old", certs.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	oldTLS, err := certs.ClientTLS(dir, "old", made.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c = &http.Client{Transport: &http.Transport{TLSClientConfig: oldTLS}, Timeout: 10 * time.Second}
	if _, err := call(t, c, "GET", base+"/v1/status", ""); err == nil {
		t.Fatal("expired client certificate: no error")
	}
	if got := refusedCount(t, a, refusedExpired); got != 1 {
		t.Errorf("refused expired = %v, want 1", got)
	}

	// The node's own certificate verifies as a client but carries no role.
	nodeTLS, err := certs.LoadNode(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: nodeTLS.Pool(), Certificates: []tls.Certificate{nodeTLS.TLSCertificate()},
	}}, Timeout: 10 * time.Second}
	r, err := call(t, c, "GET", base+"/v1/status", "")
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, r, http.StatusForbidden, "carries no role")
}

func TestTLSConfigErrors(t *testing.T) {
	dir := testCerts(t)
	cfg := testConfig(t)
	cfg.Name = "other"
	cfg.CertsDir = dir
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), `differs from the name in`) {
		t.Fatalf("name mismatch: %v", err)
	}
	cfg.Name = ""
	cfg.CertsDir = filepath.Join(t.TempDir(), "none")
	_, err = New(cfg)
	if err == nil || !strings.Contains(err.Error(), "--certs-dir") || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("missing certs: %v", err)
	}

	// The name comes from node.crt unless given.
	c, err := ParseConfig([]string{"--certs-dir", dir}, nil)
	if err != nil || c.Name != "" || c.CertsDir != dir {
		t.Fatalf("ParseConfig: %+v %v", c.Name, err)
	}
	c, err = ParseConfig([]string{"--certs-dir", dir}, env("HEARSAY_NAME", "n1"))
	if err != nil || c.Name != "n1" {
		t.Fatalf("ParseConfig with HEARSAY_NAME: %q %v", c.Name, err)
	}
	c, err = ParseConfig(nil, env("HEARSAY_CERTS_DIR", dir))
	if err != nil || c.CertsDir != dir {
		t.Fatalf("ParseConfig with HEARSAY_CERTS_DIR: %q %v", c.CertsDir, err)
	}
}

func TestCheckExposureWithCerts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Bind, cfg.HTTP, cfg.CertsDir = "127.0.0.1:7946", "0.0.0.0:7947", "certs"
	if err := cfg.CheckExposure(); err != nil {
		t.Errorf("HTTP beyond loopback with --certs-dir: %v", err)
	}
	// Node certificates sign gossip: they satisfy the gossip requirement.
	cfg.Bind = "0.0.0.0:7946"
	if err := cfg.CheckExposure(); err != nil {
		t.Errorf("gossip beyond loopback with certs only: %v", err)
	}
	cfg.CertsDir = ""
	err := cfg.CheckExposure()
	if err == nil || !strings.Contains(err.Error(), "--bind 0.0.0.0:7946") || !strings.Contains(err.Error(), "--certs-dir DIR") || !strings.Contains(err.Error(), "--secret-key-file") {
		t.Errorf("gossip beyond loopback without credentials: %v", err)
	}
	cfg.Bind = "127.0.0.1:7946"
	err = cfg.CheckExposure()
	var msg string
	if err != nil {
		msg = err.Error()
	}
	if !strings.Contains(msg, "--http 0.0.0.0:7947") || !strings.Contains(msg, "--certs-dir DIR") || !strings.Contains(msg, "--insecure") {
		t.Errorf("HTTP beyond loopback without certs: %v", err)
	}
}

// TestTLSRouteTable checks that every route of the API has a role: a
// route missing from routeRoles would need admin.
func TestTLSRouteTable(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	for route := range routeRoles {
		if route == "unmatched" || strings.Contains(route, "watch") { // a watch streams until closed
			continue
		}
		method, path, _ := strings.Cut(route, " ")
		path = strings.Replace(path, "{key...}", "k", 1)
		r := do(t, srv, method, path, "", nil)
		if r.code == 404 && path != "/v1/kv/k" {
			var er ErrorResponse
			if json.Unmarshal(r.body, &er) == nil && strings.Contains(er.Error, "no such endpoint") {
				t.Errorf("routeRoles names %q, which the API does not serve", route)
			}
		}
	}
	if roleFor("GET /v1/new-route") != certs.RoleAdmin {
		t.Error("an unlisted route does not need admin")
	}
}

// refusedCount reads hearsay_http_auth_refused_total{reason} from the
// agent's registry.
func refusedCount(t *testing.T, a *Agent, reason string) float64 {
	t.Helper()
	mfs, err := a.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "hearsay_http_auth_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no hearsay_http_auth_refused_total{reason=%q}", reason)
	return 0
}
