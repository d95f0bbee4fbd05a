package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hearsaydb/hearsay/agent"
	"github.com/hearsaydb/hearsay/internal/certs"
)

// client talks to one agent's HTTP API. It knows routes and encodings, no
// protocol.
type client struct {
	addr     string // as the user gave it, for messages
	certsDir string // when speaking HTTPS, for messages
	base     *url.URL
	timeout  time.Duration
	http     *http.Client
}

func newClient(g *globals) (*client, error) {
	raw := strings.TrimSpace(g.addr)
	if raw == "" {
		return nil, usagef("--addr is empty")
	}
	if !strings.Contains(raw, "://") {
		scheme := "http://"
		if g.certsDir != "" {
			scheme = "https://"
		}
		raw = scheme + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, usagef("--addr %q: want host:port or http://host:port", g.addr)
	}
	if g.certsDir != "" && u.Scheme == "http" {
		return nil, usagef("--addr %q is plain http, but --certs-dir %s asks for HTTPS: drop the http:// (or --certs-dir)", g.addr, g.certsDir)
	}
	if g.timeout <= 0 {
		return nil, usagef("--timeout %v: must be positive", g.timeout)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // an agent is local or on the LAN; never go through a proxy
	tr.DialContext = (&net.Dialer{Timeout: g.timeout}).DialContext
	tr.ResponseHeaderTimeout = g.timeout
	tr.TLSHandshakeTimeout = g.timeout
	if g.certsDir != "" {
		name, err := certs.PickClient(g.certsDir, g.certName)
		if err != nil {
			return nil, fmt.Errorf("--certs-dir: %w", err)
		}
		tc, err := certs.ClientTLS(g.certsDir, name, time.Now())
		if err != nil {
			return nil, fmt.Errorf("--certs-dir: client certificate %q: %w", name, err)
		}
		tr.TLSClientConfig = tc
	}
	return &client{
		addr:     g.addr,
		certsDir: g.certsDir,
		base:     u,
		timeout:  g.timeout,
		http:     &http.Client{Transport: tr},
	}, nil
}

// apiError is an error response of the agent.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// kvURL is the URL of a key: the key escaped as one path segment, so that
// slashes and dots in keys survive.
func (c *client) kvURL(key string) *url.URL {
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + "/v1/kv/" + key
	u.RawPath = strings.TrimSuffix(c.base.EscapedPath(), "/") + "/v1/kv/" + url.PathEscape(key)
	u.RawQuery = ""
	return &u
}

// routeURL is the URL of a fixed route with a query.
func (c *client) routeURL(path string, q url.Values) *url.URL {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return &u
}

// do sends a request. Unless stream is set, the whole exchange, body
// included, is bounded by the timeout. A response that is not 2xx becomes
// an *apiError carrying the agent's message; a request that cannot reach
// the agent becomes an error saying so.
func (c *client) do(ctx context.Context, method string, u *url.URL, body io.Reader, header http.Header, stream bool) (*http.Response, error) {
	cancel := context.CancelFunc(func() {})
	if !stream {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("building request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "hearsay-cli/"+Version)
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// transportError explains a failed request.
func (c *client) transportError(ctx context.Context, err error) error {
	var ue *url.Error
	inner := err
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	if context.Cause(ctx) != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted: %w", err)
	}
	if hint := tlsHint(inner, c.certsDir); hint != "" {
		return fmt.Errorf("agent at %s: %v (%s)", c.addr, inner, hint)
	}
	if errors.Is(err, context.DeadlineExceeded) || (ue != nil && ue.Timeout()) {
		return fmt.Errorf("agent at %s did not answer within %v (--timeout): %v", c.addr, c.timeout, inner)
	}
	return fmt.Errorf("cannot reach agent at %s: %v (is an agent running there? start one with 'hearsay agent' or 'hearsay demo', or point --addr or %s at a running agent)",
		c.addr, inner, envAddr)
}

// tlsHint explains a TLS failure talking to an agent, or returns "".
func tlsHint(err error, certsDir string) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var re tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &ua):
		return fmt.Sprintf("its certificate is not signed by %s in %s: is it another cluster's agent?", certs.CACert, certsDir)
	case errors.As(err, &hn):
		return "its certificate does not name the host of --addr; recreate it with hearsay cert create-node --host, or use an address it names"
	case errors.As(err, &ci):
		return "its certificate is not valid now: " + ci.Error()
	case errors.As(err, &re) || strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return "it answered in plain HTTP: it serves HTTP, not HTTPS (drop --certs-dir, or start the agent with --certs-dir), or it has --max-http-conns connections open and refused this one"
	case strings.Contains(msg, "tls: bad certificate"), strings.Contains(msg, "tls: unknown certificate authority"),
		strings.Contains(msg, "tls: expired certificate"), strings.Contains(msg, "tls: certificate required"):
		return "the agent refused this client certificate: is it signed by the agent's CA, valid now, and a client certificate? (hearsay cert list --certs-dir " + certsDir + ")"
	}
	return ""
}

// readAPIError turns an error response into an *apiError.
func readAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var er agent.ErrorResponse
	msg := ""
	if json.Unmarshal(data, &er) == nil && er.Error != "" {
		msg = er.Error
	} else if s := strings.TrimSpace(string(data)); s != "" && len(s) < 300 {
		msg = fmt.Sprintf("agent answered %s: %s", resp.Status, s)
		if strings.Contains(s, "HTTP request to an HTTPS server") {
			msg += " (pass --certs-dir to talk HTTPS with a client certificate)"
		}
	} else {
		msg = "agent answered " + resp.Status
	}
	return &apiError{code: resp.StatusCode, msg: msg}
}

// cancelBody releases the request's timeout when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// getJSON GETs u and decodes the JSON response into v; raw, when not nil,
// receives the body as it came.
func (c *client) getJSON(ctx context.Context, u *url.URL, v any, raw *[]byte) error {
	resp, err := c.do(ctx, http.MethodGet, u, nil, http.Header{"Accept": {"application/json"}}, false)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp, v, raw)
}

func decodeBody(resp *http.Response, v any, raw *[]byte) error {
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading response of %s: %w", resp.Request.URL.Path, err)
	}
	if raw != nil {
		*raw = data
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decoding response of %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}
