package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/internal/transport"
)

// The keyring API (admin role under --certs-dir): each route applies its
// operation to the gossip keyring of every live member and answers with
// every member's answer (KeysResponse).
//
//	GET    /v1/keys              list the keys of every member
//	POST   /v1/keys              install {"key": "<base64>"} as a secondary key
//	PUT    /v1/keys/primary      use {"id": "<key id or base64 key>"} as the primary key
//	DELETE /v1/keys/{id}         remove a secondary key
//
// ?timeout= (a Go duration, at most MaxKeyOpTimeout) bounds the wait for
// the members' answers; default hearsay.DefaultKeyOpTimeout.
const (
	// MaxKeyOpTimeout is the longest ?timeout= of a key operation.
	MaxKeyOpTimeout = time.Minute
	// maxKeyBody bounds the body of a key request: a base64 key is 44
	// bytes.
	maxKeyBody = 4 << 10
)

// KeysResponse is the answer of the keyring routes: the operation's
// outcome on every member, and Error when it failed on some (HTTP 500:
// the operation was applied where it succeeded; run it again once the
// failing members are back, every operation is idempotent).
type KeysResponse struct {
	hearsay.KeyResponse
	Error string `json:"error,omitempty"`
}

// InstallKeyRequest is the body of POST /v1/keys.
type InstallKeyRequest struct {
	// Key is the key to install, base64 of 16, 24 or 32 bytes.
	Key string `json:"key"`
}

// UseKeyRequest is the body of PUT /v1/keys/primary.
type UseKeyRequest struct {
	// ID names the key to make primary: its id (hearsay keys list) or the
	// key itself in base64.
	ID string `json:"id"`
}

func (a *Agent) handleKeysList(w http.ResponseWriter, r *http.Request) {
	timeout, ok := keyTimeout(w, r)
	if !ok {
		return
	}
	a.keyOp(w, r, timeout, func(ctx context.Context) (hearsay.KeyResponse, error) { return a.node.Keys(ctx) })
}

func (a *Agent) handleKeyInstall(w http.ResponseWriter, r *http.Request) {
	timeout, ok := keyTimeout(w, r)
	if !ok {
		return
	}
	var req InstallKeyRequest
	if !readKeyBody(w, r, &req, `{"key": "<base64>"}`) {
		return
	}
	key, err := transport.ParseKey(req.Key)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"key": %v`, err))
		return
	}
	a.keyOp(w, r, timeout, func(ctx context.Context) (hearsay.KeyResponse, error) { return a.node.InstallKey(ctx, key) })
}

func (a *Agent) handleKeyUse(w http.ResponseWriter, r *http.Request) {
	timeout, ok := keyTimeout(w, r)
	if !ok {
		return
	}
	var req UseKeyRequest
	if !readKeyBody(w, r, &req, `{"id": "<key id>"}`) {
		return
	}
	a.keyOp(w, r, timeout, func(ctx context.Context) (hearsay.KeyResponse, error) { return a.node.UseKey(ctx, req.ID) })
}

func (a *Agent) handleKeyRemove(w http.ResponseWriter, r *http.Request) {
	timeout, ok := keyTimeout(w, r)
	if !ok {
		return
	}
	// The front handler routes through mux.Handler, which sets no path
	// values: the id is what follows the prefix.
	id, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/keys/"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad key id escaping in path: %v", err))
		return
	}
	a.keyOp(w, r, timeout, func(ctx context.Context) (hearsay.KeyResponse, error) { return a.node.RemoveKey(ctx, id) })
}

// keyTimeout reads a key request's ?timeout=, answering 400 itself when
// it is unusable.
func keyTimeout(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	s := r.URL.Query().Get("timeout")
	if s == "" {
		return hearsay.DefaultKeyOpTimeout, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > MaxKeyOpTimeout {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad timeout %q: want a duration above 0 and at most %v, such as 5s", s, MaxKeyOpTimeout))
		return 0, false
	}
	return d, true
}

// keyOp runs a key operation within timeout and answers.
func (a *Agent) keyOp(w http.ResponseWriter, r *http.Request, timeout time.Duration, op func(context.Context) (hearsay.KeyResponse, error)) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	resp, err := op(ctx)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, KeysResponse{KeyResponse: resp})
	case errors.Is(err, hearsay.ErrKeyOpIncomplete):
		a.log.Warn("key operation incomplete", "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, KeysResponse{KeyResponse: resp, Error: err.Error()})
	case errors.Is(err, hearsay.ErrKeyRefused):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, hearsay.ErrNoKeyring):
		writeError(w, http.StatusConflict, err.Error()+"; start the agents with --secret-key-file to encrypt gossip")
	default:
		a.fail(w, r, "", err)
	}
}

// readKeyBody decodes a small JSON body into v, answering 400 itself when
// it cannot.
func readKeyBody(w http.ResponseWriter, r *http.Request, v any, want string) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxKeyBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading request body (at most %d bytes): %v", maxKeyBody, err))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed JSON body (want %s): %v", want, err))
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed JSON body: data after the object (want %s)", want))
		return false
	}
	return true
}
