package agent

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearsaydb/hearsay"
)

// keyFile writes a new random key file and returns its path and key.
func keyFile(t *testing.T) (string, []byte) {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, k
}

func TestKeysAPI(t *testing.T) {
	cfg := testConfig(t)
	path, oldK := keyFile(t)
	cfg.SecretKeyFile = path
	_, srv := newTestServer(t, cfg)
	oldID := hearsay.KeyID(oldK)

	r := do(t, srv, "GET", "/v1/keys", "", nil)
	wantCode(t, r, http.StatusOK)
	list := decode[KeysResponse](t, r)
	if list.Nodes != 1 || list.Responses != 1 || len(list.Keys) != 1 || list.Keys[0].ID != oldID || list.Keys[0].Primary != 1 {
		t.Fatalf("list %+v, want one node holding %s as primary", list, oldID)
	}

	newK := make([]byte, 16)
	_, _ = rand.Read(newK)
	newID := hearsay.KeyID(newK)
	wantError(t, do(t, srv, "POST", "/v1/keys", "application/json", []byte(`{"key": "c2hvcnQ="}`)), http.StatusBadRequest, "want 16, 24 or 32")
	wantError(t, do(t, srv, "POST", "/v1/keys", "application/json", []byte(`{"kee": "x"}`)), http.StatusBadRequest, "malformed JSON body")
	wantError(t, do(t, srv, "POST", "/v1/keys?timeout=forever", "application/json", []byte(`{"key": "x"}`)), http.StatusBadRequest, "bad timeout")
	wantError(t, do(t, srv, "PUT", "/v1/keys/primary", "application/json", []byte(`{"id": "`+newID+`"}`)), http.StatusBadRequest, "no key")
	wantError(t, do(t, srv, "DELETE", "/v1/keys/"+oldID, "", nil), http.StatusBadRequest, "primary key")

	r = do(t, srv, "POST", "/v1/keys?timeout=5s", "application/json", []byte(`{"key": "`+base64.StdEncoding.EncodeToString(newK)+`"}`))
	wantCode(t, r, http.StatusOK)
	if got := decode[KeysResponse](t, r); len(got.Keys) != 2 || got.Errors != 0 {
		t.Fatalf("after install: %+v", got)
	}
	wantCode(t, do(t, srv, "PUT", "/v1/keys/primary", "application/json", []byte(`{"id": "`+newID+`"}`)), http.StatusOK)
	r = do(t, srv, "DELETE", "/v1/keys/"+oldID, "", nil)
	wantCode(t, r, http.StatusOK)
	got := decode[KeysResponse](t, r)
	if len(got.Keys) != 1 || got.Keys[0].ID != newID || got.Keys[0].Primary != 1 || got.Members[0].Name != "t1" {
		t.Fatalf("after rotation: %+v", got)
	}
}

func TestKeysAPIWithoutKey(t *testing.T) {
	_, srv := newTestServer(t, testConfig(t))
	wantError(t, do(t, srv, "GET", "/v1/keys", "", nil), http.StatusConflict, "--secret-key-file")
}

// The keyring routes need the admin role.
func TestTLSKeysNeedAdmin(t *testing.T) {
	dir := testCerts(t)
	path, _ := keyFile(t)
	a := runTLSAgentWith(t, dir, func(c *Config) { c.SecretKeyFile = path })
	base := "https://" + a.HTTPAddr()
	for _, who := range []string{"", "reader", "writer", "admin"} {
		c := tlsClient(t, dir, who)
		for _, rt := range [][2]string{{"GET", "/v1/keys"}, {"POST", "/v1/keys"}, {"PUT", "/v1/keys/primary"}, {"DELETE", "/v1/keys/00000000"}} {
			r, err := call(t, c, rt[0], base+rt[1], `{}`)
			if err != nil {
				t.Fatal(err)
			}
			switch who {
			case "":
				wantError(t, r, http.StatusUnauthorized, "client certificate is required")
			case "reader", "writer":
				wantError(t, r, http.StatusForbidden, `client "`+who+`" has role`)
			default:
				if r.code == http.StatusUnauthorized || r.code == http.StatusForbidden {
					t.Errorf("admin: %s %s: %d %s", rt[0], rt[1], r.code, r.body)
				}
			}
		}
	}
}
