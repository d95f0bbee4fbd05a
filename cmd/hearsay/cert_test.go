package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/certs"
)

// makeCerts runs the cert commands: a CA, node n1 for loopback, and
// clients root (admin) and ro (read).
func makeCerts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	cli(t, nil, "", "cert", "create-ca", "--certs-dir", dir).want(t, 0)
	cli(t, nil, "", "cert", "create-node", "--certs-dir", dir, "--name", "n1", "--host", "localhost,127.0.0.1").want(t, 0)
	cli(t, nil, "", "cert", "create-client", "--certs-dir", dir, "--name", "root", "--role", "admin").want(t, 0)
	cli(t, []string{envCertsDir + "=" + dir}, "", "cert", "create-client", "--name", "ro", "--role", "read").want(t, 0)
	return dir
}

func TestCertCommands(t *testing.T) {
	dir := makeCerts(t)
	for f, mode := range map[string]os.FileMode{
		"ca.crt": 0o644, "ca.key": 0o600, "node.crt": 0o644, "node.key": 0o600,
		"client.root.crt": 0o644, "client.root.key": 0o600, "client.ro.crt": 0o644, "client.ro.key": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", f, fi.Mode().Perm(), mode)
		}
	}
	n, err := certs.LoadNode(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "n1" || len(n.Cert.DNSNames) != 1 || len(n.Cert.IPAddresses) != 1 {
		t.Errorf("node certificate: %q %v %v", n.Name(), n.Cert.DNSNames, n.Cert.IPAddresses)
	}

	r := cli(t, nil, "", "cert", "list", "--certs-dir", dir).want(t, 0)
	for _, s := range []string{"ca.crt", "localhost,127.0.0.1", "client.root.crt", "admin", "client.ro.crt", "read"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("list output lacks %q:\n%s", s, r.stdout)
		}
	}
	var infos []certs.Info
	r = cli(t, nil, "", "cert", "list", "--certs-dir", dir, "--json").want(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 4 {
		t.Fatalf("list --json: %v %s", err, r.stdout)
	}
	for _, i := range infos {
		if i.Problem != "" {
			t.Errorf("%s: %s", i.File, i.Problem)
		}
	}

	// Lifetime: a one-day client certificate.
	cli(t, nil, "", "cert", "create-client", "--certs-dir", dir, "--name", "day", "--role", "write", "--lifetime", "24h").want(t, 0)
	p, err := certs.LoadPair(dir, "client.day.crt", "client.day.key", n.CA, 0, time.Now())
	if err == nil {
		if d := time.Until(p.Cert.NotAfter); d > 24*time.Hour || d < 23*time.Hour {
			t.Errorf("--lifetime 24h: valid for %v", d)
		}
	}

	// Errors.
	empty := filepath.Join(t.TempDir(), "empty")
	cases := []struct {
		code int
		args []string
		msg  string
	}{
		{exitError, []string{"cert", "create-ca", "--certs-dir", dir}, "ca.crt exists; pass --overwrite"},
		{exitError, []string{"cert", "create-client", "--certs-dir", dir, "--name", "ro", "--role", "write"}, "client.ro.crt exists"},
		{exitUsage, []string{"cert", "create-client", "--certs-dir", dir, "--name", "x", "--role", "root"}, "--role"},
		{exitUsage, []string{"cert", "create-client", "--certs-dir", dir, "--role", "read"}, "--name is required"},
		{exitError, []string{"cert", "create-client", "--certs-dir", dir, "--name", "../x", "--role", "read"}, "client name"},
		{exitUsage, []string{"cert", "create-ca"}, "--certs-dir is required"},
		{exitError, []string{"cert", "create-node", "--certs-dir", empty, "--name", "n1"}, "hearsay cert create-ca --certs-dir " + empty},
		{exitError, []string{"cert", "create-node", "--certs-dir", dir, "--name", "n2", "--overwrite", "--host", "a b"}, "not a DNS name"},
		{exitUsage, []string{"cert", "create-node", "--certs-dir", dir, "--name", "n2", "--lifetime", "-1h"}, "--lifetime"},
		{exitError, []string{"cert", "list", "--certs-dir", filepath.Join(empty, "none")}, "no such file"},
		{exitUsage, []string{"cert", "revoke", "--certs-dir", dir}, "--name (a node) or --client"},
		{exitUsage, []string{"cert", "revoke", "--certs-dir", dir, "--name", "n2", "--client", "ro"}, "one node or one client"},
		{exitUsage, []string{"cert", "revoke", "--certs-dir", dir, "--client", "../x"}, "client name"},
	}
	for _, c := range cases {
		r := cli(t, nil, "", c.args...).want(t, c.code)
		if !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%q: stderr %q, want %q", c.args, r.stderr, c.msg)
		}
	}
	// The refused overwrite left ro's read certificate as it was.
	ro, err := certs.LoadPair(dir, "client.ro.crt", "client.ro.key", n.CA, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if role, _ := certs.RoleOf(ro.Cert); role != certs.RoleRead {
		t.Errorf("ro's role is %v after a refused overwrite", role)
	}
	cli(t, nil, "", "cert", "create-client", "--certs-dir", dir, "--name", "ro", "--role", "write", "--overwrite").want(t, 0)
}

// startTLSAgent runs `hearsay agent --certs-dir dir` on free loopback
// ports and waits until it answers its liveness probe over HTTPS (which
// needs no client certificate).
func startTLSAgent(t *testing.T, dir string) *agentProc {
	t.Helper()
	a := spawnAgent(t, "with --certs-dir "+dir, func(a *agentProc) []string {
		return []string{"--certs-dir", dir, "--bind", a.gossip, "--http", a.addr,
			"--data-dir", t.TempDir(), "--no-sync", "--log-level", "warn"}
	})
	n, err := certs.LoadNode(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n.Pool()}}
	defer tr.CloseIdleConnections()
	waitAnswer(t, &http.Client{Transport: tr}, "https://"+a.addr+"/v1/health/live", a.done, &a.err)
	return a
}

func TestCLIOverTLS(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses SIGTERM")
	}
	dir := makeCerts(t)
	a := startTLSAgent(t, dir)
	run := func(env []string, args ...string) result {
		t.Helper()
		return cli(t, env, "", append(args, "--addr", a.addr)...)
	}

	run(nil, "put", "k", "v", "--certs-dir", dir, "--cert-name", "root").want(t, 0)
	if r := run([]string{envCertsDir + "=" + dir, envCertName + "=ro"}, "get", "k").want(t, 0); r.stdout != "v" {
		t.Errorf("get as ro: %q", r.stdout)
	}
	r := run(nil, "status", "--certs-dir", dir, "--cert-name", "ro", "--json").want(t, 0)
	if !strings.Contains(r.stdout, `"name":"n1"`) {
		t.Errorf("status: the node is not named n1 from its certificate: %s", r.stdout)
	}
	run(nil, "health", "--ready", "--certs-dir", dir, "--cert-name", "ro").want(t, 0)
	run(nil, "members", "--certs-dir", dir).want(t, 0) // root: the default among several

	// Refusals, each with a message that says what to do.
	cases := []struct {
		env  []string
		args []string
		msg  string
	}{
		{nil, []string{"put", "k", "w", "--certs-dir", dir, "--cert-name", "ro"}, `client "ro" has role read`},
		{nil, []string{"del", "k", "--certs-dir", dir, "--cert-name", "ro"}, "needs role write"},
		{nil, []string{"get", "k"}, "--certs-dir"}, // plain HTTP to an HTTPS agent
		{nil, []string{"get", "k", "--certs-dir", dir, "--cert-name", "nobody"}, "client.nobody.crt"},
	}
	other := makeCerts(t)
	cases = append(cases,
		struct {
			env  []string
			args []string
			msg  string
		}{nil, []string{"get", "k", "--certs-dir", other, "--cert-name", "root"}, "not signed by ca.crt"})
	for _, c := range cases {
		r := run(c.env, c.args...).want(t, exitError)
		if !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%q: stderr %q, want %q", c.args, r.stderr, c.msg)
		}
	}
	if r := run(nil, "get", "k", "--certs-dir", dir, "--cert-name", "root").want(t, 0); r.stdout != "v" {
		t.Errorf("the refused writes changed k: %q", r.stdout)
	}
	// An agent without certificates, asked over HTTPS.
	plain := startAgent(t, "plain")
	r = cli(t, nil, "", "get", "k", "--addr", plain.addr, "--certs-dir", dir).want(t, exitError)
	if !strings.Contains(r.stderr, "it answered in plain HTTP") {
		t.Errorf("HTTPS to a plain agent: stderr %q", r.stderr)
	}
	a.stop(t)
}
