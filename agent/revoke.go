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

// RevocationRequest is the body of POST /v1/revocations: a revocation of a
// node or of a client made and signed with the CA's key by hearsay cert
// revoke (certs.Revocation), base64.
type RevocationRequest struct {
	Revocation string `json:"revocation"`
}

// RevocationResponse answers POST /v1/revocations once the revocation is
// durable on the agent; it then gossips to every member.
type RevocationResponse struct {
	Name string `json:"name"`
	// Client is set when Name is a client certificate's name.
	Client  bool      `json:"client,omitempty"`
	At      time.Time `json:"at"`
	Version string    `json:"version"`
}

// RevocationsResponse answers GET /v1/revocations: the revoked node and
// client names this agent knows (read role), each with when its
// revocation took effect.
type RevocationsResponse struct {
	Nodes   []RevokedName `json:"nodes"`
	Clients []RevokedName `json:"clients"`
}

// RevokedName is one revoked name.
type RevokedName struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
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
	if rev.Client {
		a.log.Warn("revocation issued: the client's certificates are refused by every agent", "client", rev.Name, "at", rev.At)
	} else {
		a.log.Warn("revocation issued: the node is expelled from the cluster", "revoked", rev.Name, "at", rev.At)
	}
	writeJSON(w, http.StatusOK, RevocationResponse{Name: rev.Name, Client: rev.Client, At: rev.At, Version: v.String()})
}

// handleRevocations is GET /v1/revocations.
func (a *Agent) handleRevocations(w http.ResponseWriter, _ *http.Request) {
	out := RevocationsResponse{Nodes: []RevokedName{}, Clients: []RevokedName{}}
	for _, r := range a.node.Revocations() {
		if r.Client {
			out.Clients = append(out.Clients, RevokedName{Name: r.Name, At: r.At})
		} else {
			out.Nodes = append(out.Nodes, RevokedName{Name: r.Name, At: r.At})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// revocationStatus maps the errors of revocations and reserved keys.
func revocationStatus(err error) (int, bool) {
	switch {
	case errors.Is(err, hearsay.ErrReservedKey), errors.Is(err, hearsay.ErrBadRevocation), errors.Is(err, hearsay.ErrNoCertificates):
		return http.StatusBadRequest, true
	}
	return 0, false
}
