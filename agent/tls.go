package agent

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/hearsaydb/hearsay/internal/certs"
)

// FlagCertsDir is the flag naming the certs directory (see Config.CertsDir).
const FlagCertsDir = "certs-dir"

// certExpiryWarning is how long before its node certificate expires an
// agent warns at start.
const certExpiryWarning = 30 * 24 * time.Hour

func init() {
	// Kept apart from the list in config.go so the two merge cleanly.
	fileKeys = append(fileKeys, FlagCertsDir)
	slices.Sort(fileKeys)
}

// registerCertFlags defines --certs-dir.
func (c *Config) registerCertFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.CertsDir, FlagCertsDir, c.CertsDir, "certs directory (ca.crt, node.crt, node.key; see hearsay cert): a certificate cluster: gossip is authenticated by node.crt and only peers with node certificates of this CA are accepted, every record is signed with node.key and verified by every receiver, and the HTTP API is served over TLS to clients with certificates of this CA, authorised by their role; the node's name is node.crt's CN")
}

// Why a request or TLS handshake was refused, the label values of
// hearsay_http_auth_refused_total.
const (
	refusedNoCertificate  = "no_certificate"  // 401: no client certificate
	refusedBadCertificate = "bad_certificate" // handshake: not signed by the CA, wrong usage, unparsable
	refusedExpired        = "expired"         // handshake or 401: outside its validity
	refusedNoRole         = "no_role"         // 403: a valid certificate without a role (a node's)
	refusedRole           = "role"            // 403: the role is too low for the route
	refusedRevoked        = "revoked"         // 401: the client's name was revoked (hearsay cert revoke --client)
)

// authMetrics count the requests and handshakes refused by the client
// certificate check.
type authMetrics struct {
	refused *prometheus.CounterVec
	expiry  *prometheus.GaugeVec
}

func newAuthMetrics(reg prometheus.Registerer) (*authMetrics, error) {
	m := &authMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hearsay", Subsystem: "http", Name: "auth_refused_total",
			Help: "HTTP API requests (401, 403) and TLS handshakes refused by the client certificate check, by reason: no_certificate, bad_certificate, expired, no_role, role, revoked.",
		}, []string{"reason"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "hearsay", Name: "certificate_expiry_timestamp_seconds",
			Help: "When the certificates of --certs-dir expire (Unix time), by file.",
		}, []string{"file"}),
	}
	for _, r := range []string{refusedNoCertificate, refusedBadCertificate, refusedExpired, refusedNoRole, refusedRole, refusedRevoked} {
		m.refused.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.refused, m.expiry} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// routeRoles is the role each route of the API needs when the agent has a
// certs directory. A route missing here needs RoleAdmin: a new route is
// closed until someone decides who may use it.
var routeRoles = map[string]certs.Role{
	"GET /v1/kv/{key...}":    certs.RoleRead,
	"PUT /v1/kv/{key...}":    certs.RoleWrite,
	"DELETE /v1/kv/{key...}": certs.RoleWrite,
	"GET /v1/kv":             certs.RoleRead,
	"GET /v1/watch":          certs.RoleRead,
	"GET /v1/members":        certs.RoleRead,
	"GET /v1/status":         certs.RoleRead,
	"GET /metrics":           certs.RoleRead,
	"GET /v1/stats":          certs.RoleRead,
	"GET /v1/spread":         certs.RoleRead,
	"GET /v1/revocations":    certs.RoleRead,
	// The gossip keyring (hearsay keys): admin only, listing included.
	"GET /v1/keys":         certs.RoleAdmin,
	"POST /v1/keys":        certs.RoleAdmin,
	"PUT /v1/keys/primary": certs.RoleAdmin,
	"DELETE /v1/keys/{id}": certs.RoleAdmin,
	// Probes of orchestrators (kubelet httpGet, load balancers) carry no
	// client certificate; the answers say only live or ready, and why not.
	"GET /v1/health/live":  certs.RoleNone,
	"GET /v1/health/ready": certs.RoleNone,
	// The dashboard's static files hold no data: what they show comes
	// from the read routes above, with the browser's client certificate.
	"GET /ui/": certs.RoleNone,
	"GET /ui":  certs.RoleNone,
	// An unknown path or method: authenticated callers learn it is 404 or
	// 405, strangers learn nothing.
	"unmatched": certs.RoleRead,
}

// roleFor returns the role route needs.
func roleFor(route string) certs.Role {
	if r, ok := routeRoles[route]; ok {
		return r
	}
	return certs.RoleAdmin
}

// loadIdentity loads the certs directory, checks the node's name against
// its certificate and builds the HTTP server's TLS configuration: TLS 1.3,
// node.crt as the server certificate, client certificates requested and,
// when given, verified against ca.crt during the handshake. A client
// without one completes the handshake, so that probes reach the health
// routes and everyone else gets a JSON 401 rather than a TLS alert.
func (a *Agent) loadIdentity(cfg *Config) error {
	id, err := certs.LoadNode(cfg.CertsDir, time.Now())
	if err != nil {
		return fmt.Errorf("--%s: %w", FlagCertsDir, err)
	}
	switch {
	case cfg.Name == "":
		cfg.Name = id.Name()
	case cfg.Name != id.Name():
		return fmt.Errorf("--%s %q differs from the name in %s/%s, %q: a node's name is its certificate's CN; drop --%s, or create the node's certificate with hearsay cert create-node --name %s",
			FlagName, cfg.Name, cfg.CertsDir, certs.NodeCert, id.Name(), FlagName, cfg.Name)
	}
	keyFile := filepath.Join(cfg.CertsDir, certs.NodeKey)
	if fi, err := os.Stat(keyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		a.log.Warn("the node's key can be read by other users; chmod 600 it", "file", keyFile, "mode", fi.Mode().Perm().String())
	}
	a.identity = id
	a.tls = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.TLSCertificate()},
		// RequestClientCert, not RequireAndVerifyClientCert: the health
		// routes answer without a certificate. A certificate that is given
		// is verified here, in the handshake, before any HTTP is read.
		ClientAuth:            tls.RequestClientCert,
		ClientCAs:             id.Pool(), // named in the request, to help clients choose
		VerifyPeerCertificate: a.verifyClient,
	}
	return nil
}

// verifyClient checks a client certificate in the TLS handshake: signed by
// the CA (which signs leaves directly, so no intermediates), valid now, for
// client authentication. No certificate passes here and is refused by
// authorize on every route but health.
func (a *Agent) verifyClient(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return nil
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		a.auth.refused.WithLabelValues(refusedBadCertificate).Inc()
		return fmt.Errorf("client certificate: %w", err)
	}
	now := time.Now()
	if err := certs.Verify(cert, a.identity.CA, x509.ExtKeyUsageClientAuth, now); err != nil {
		reason := refusedBadCertificate
		if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
			reason = refusedExpired
		}
		a.auth.refused.WithLabelValues(reason).Inc()
		a.log.Debug("TLS client certificate refused", "reason", reason, "err", err)
		return err
	}
	return nil
}

// authorize wraps h with the check of the client certificate's role
// against what route needs: 401 without a valid certificate or with a
// revoked one, 403 when its role is too low. The certificate was verified
// in the handshake (verifyClient); its validity and its revocation are
// checked again on every request, so that a keep-alive connection opened
// before a revocation (or before the certificate expired) is refused too.
func (a *Agent) authorize(h http.Handler, route string) http.Handler {
	need := roleFor(route)
	if a.tls == nil || need == certs.RoleNone {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, code, reason, msg := a.roleOf(r)
		if code == 0 && role < need {
			code, reason = http.StatusForbidden, refusedRole
			msg = fmt.Sprintf("client %q has role %s; %s %s needs role %s", clientName(r), role, r.Method, r.URL.Path, need)
		}
		if code != 0 {
			a.auth.refused.WithLabelValues(reason).Inc()
			a.log.Debug("request refused", "reason", reason, "client", clientName(r), "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, code, msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// roleOf returns the role of r's client certificate, or the status code,
// reason and message of a refusal.
func (a *Agent) roleOf(r *http.Request) (certs.Role, int, string, string) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return 0, http.StatusUnauthorized, refusedNoCertificate, fmt.Sprintf(
			"a client certificate is required: this agent serves HTTPS to clients with a certificate of its CA (hearsay cert create-client; the CLI takes --%s)", FlagCertsDir)
	}
	cert := r.TLS.PeerCertificates[0]
	if now := time.Now(); now.After(cert.NotAfter) {
		return 0, http.StatusUnauthorized, refusedExpired, fmt.Sprintf("client certificate %q expired on %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	role, err := certs.RoleOf(cert)
	if err != nil {
		return 0, http.StatusUnauthorized, refusedBadCertificate, err.Error()
	}
	if role == certs.RoleNone {
		return 0, http.StatusForbidden, refusedNoRole, fmt.Sprintf(
			"certificate %q carries no role (a node certificate?); use a client certificate (hearsay cert create-client --role read|write|admin)", cert.Subject.CommonName)
	}
	if at, ok := a.node.ClientRevoked(cert.Subject.CommonName); ok {
		return 0, http.StatusUnauthorized, refusedRevoked, fmt.Sprintf(
			"client certificate %q is revoked (since %s, hearsay cert revoke --client): every certificate of that client name is refused; create one under a new name",
			cert.Subject.CommonName, at.UTC().Format(time.RFC3339))
	}
	return role, 0, "", ""
}

// clientName is the CN of r's client certificate, or "".
func clientName(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}

// TLSConfig returns the HTTP API's TLS configuration when the agent has a
// certs directory, else nil: for a server of your own around Handler.
func (a *Agent) TLSConfig() *tls.Config {
	if a.tls == nil {
		return nil
	}
	return a.tls.Clone()
}

// recordIdentity logs the node's certificate and exports the expiry
// metrics, warning when the certificate expires soon.
func (a *Agent) recordIdentity() {
	if a.tls == nil {
		return
	}
	id := a.identity
	a.auth.expiry.WithLabelValues(certs.NodeCert).Set(float64(id.Cert.NotAfter.Unix()))
	a.auth.expiry.WithLabelValues(certs.CACert).Set(float64(id.CA.NotAfter.Unix()))
	left := time.Until(id.Cert.NotAfter)
	if c := time.Until(id.CA.NotAfter); c < left {
		left = c
	}
	if left < certExpiryWarning {
		a.log.Warn("a certificate of --certs-dir expires soon; create new ones (hearsay cert create-node --overwrite) and restart",
			"node_cert_expires", id.Cert.NotAfter, "ca_expires", id.CA.NotAfter)
	}
}
