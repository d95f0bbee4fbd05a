package agent

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// lintMetrics fetches /metrics with client and fails the test on every
// problem promlint finds, and on every metric family in want that is absent.
func lintMetrics(t *testing.T, client *http.Client, url string, want ...string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, w := range want {
		if !strings.Contains(string(body), w) {
			t.Errorf("metrics lack %q", w)
		}
	}
	return string(body)
}

// TestMetricsLint runs promlint over a real agent's /metrics, after
// requests that make the labelled families appear, plain and with
// certificates (whose refusal and expiry metrics exist only then).
func TestMetricsLint(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	for _, path := range []string{kvPath("k"), "/v1/kv", "/v1/members", "/nowhere"} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	body := lintMetrics(t, srv.Client(), srv.URL+"/metrics",
		`hearsay_build_info{go="go`, `version="test-version"} 1`,
		`hearsay_http_requests_total{code="404",method="GET",route="/v1/kv/{key...}"} 1`,
		`hearsay_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		"hearsay_transport_sent_bytes_total ", "hearsay_transport_sent_packets_total ",
		`hearsay_antientropy_completed_exchanges_total{role="initiator"}`, "hearsay_antientropy_sent_cells_total ",
		`hearsay_transport_rejected_frames_total{reason="auth"}`, "hearsay_store_sync_seconds_bucket{",
		"go_goroutines ", "process_")
	for _, old := range []string{"hearsay_transport_total", "hearsay_antientropy_total", `route="GET `} {
		if strings.Contains(body, old) {
			t.Errorf("metrics still have %q", old)
		}
	}

	dir := testCerts(t)
	a := runTLSAgent(t, dir)
	base := "https://" + a.HTTPAddr()
	resp, err := tlsClient(t, dir, "").Get(base + "/v1/status") // 401: no certificate
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lintMetrics(t, tlsClient(t, dir, "reader"), base+"/metrics",
		`hearsay_http_auth_refused_total{reason="no_certificate"} 1`,
		"hearsay_certificate_expiry_timestamp_seconds{")
}
