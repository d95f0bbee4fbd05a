package agent

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/certs"
)

// TestRevocationRoute: POST /v1/revocations takes an admin client's
// CA-signed revocation and answers with its name and time; it refuses
// lower roles (403), malformed bodies, forged revocations and the node's
// own name (400); reserved keys cannot be written through the key routes.
func TestRevocationRoute(t *testing.T) {
	dir := testCerts(t)
	a := runTLSAgent(t, dir)
	url := "https://" + a.HTTPAddr() + "/v1/revocations"
	key, err := certs.LoadCAKey(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	body := func(name string, k []byte) string {
		r, err := certs.NewRevocation(name, time.Now(), k)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"revocation": %q}`, base64.StdEncoding.EncodeToString(r.Marshal()))
	}
	other := testCerts(t)
	otherKey, _ := certs.LoadCAKey(other, "")
	admin, writer := tlsClient(t, dir, "admin"), tlsClient(t, dir, "writer")
	for _, c := range []struct {
		name, body string
		admin      bool
		code       int
		says       string
	}{
		{"writer", body("n2", key), false, 403, "admin"},
		{"not JSON", "revoke n2", true, 400, "revocation"},
		{"not base64", `{"revocation": "%%%"}`, true, 400, "base64"},
		{"not a revocation", `{"revocation": "aGVsbG8="}`, true, 400, "invalid revocation"},
		{"another CA", body("n2", otherKey), true, 400, "not signed by this cluster's CA"},
		{"self", body("n1", key), true, 400, "this node"},
		{"ok", body("n2", key), true, 200, `"name":"n2"`},
	} {
		cl := writer
		if c.admin {
			cl = admin
		}
		r, err := call(t, cl, "POST", url, c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.code != c.code || !strings.Contains(string(r.body), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.code, r.body, c.code, c.says)
		}
	}
	if at, ok := a.Node().Revoked("n2"); !ok || at.IsZero() {
		t.Fatalf("n2 not revoked: %v %v", at, ok)
	}
	r, err := call(t, admin, "DELETE", "https://"+a.HTTPAddr()+"/v1/kv/%00hearsay%2Frevoked%2Fn2", "")
	if err != nil || r.code != 400 || !strings.Contains(string(r.body), "reserved key") {
		t.Fatalf("delete of a revocation: %d %s %v", r.code, r.body, err)
	}
}
