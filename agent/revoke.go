package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/internal/certs"
)

// RevocationRequest is the body of POST /v1/revocations: a revocation made
// and signed with the CA's key by hearsay cert revoke (certs.Revocation),
// base64.
type RevocationRequest struct {
	Revocation string `json:"revocation"`
}

// RevocationResponse answers POST /v1/revocations once the revocation is
// durable on the agent; it then gossips to every member.
type RevocationResponse struct {
	Name    string    `json:"name"`
	At      time.Time `json:"at"`
	Version string    `json:"version"`
}

// handleRevoke is POST /v1/revocations (admin role: not in routeRoles).
func (a *Agent) handleRevoke(w http.ResponseWriter, r *http.Request) {
	data, release, err := a.readBody(w, r, 4<<10)
	defer release()
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
		return
	}
	var req RevocationRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`body: want {"revocation": "<base64>"}: %v`, err))
		return
	}
	raw, err := base64.StdEncoding.DecodeString(req.Revocation)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("revocation: not base64: %v", err))
		return
	}
	rev, err := certs.UnmarshalRevocation(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := a.node.Revoke(r.Context(), raw)
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	a.log.Warn("revocation issued: the node is expelled from the cluster", "revoked", rev.Name, "at", rev.At)
	writeJSON(w, http.StatusOK, RevocationResponse{Name: rev.Name, At: rev.At, Version: v.String()})
}

// revocationStatus maps the errors of revocations and reserved keys.
func revocationStatus(err error) (int, bool) {
	switch {
	case errors.Is(err, hearsay.ErrReservedKey), errors.Is(err, hearsay.ErrBadRevocation), errors.Is(err, hearsay.ErrNoCertificates):
		return http.StatusBadRequest, true
	}
	return 0, false
}
