package certs

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Info describes one certificate file of a certs directory.
type Info struct {
	// File is the certificate's file name in the directory.
	File string `json:"file"`
	// Kind is ca, node or client.
	Kind string `json:"kind"`
	// Name is the subject's CN: the node's or client's name.
	Name string `json:"name"`
	// Role is a client's role; empty for the CA and nodes.
	Role string `json:"role,omitempty"`
	// Hosts are a node's DNS names and IP addresses.
	Hosts     []string  `json:"hosts,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// KeyPresent tells whether the matching key file is there.
	KeyPresent bool `json:"key_present"`
	// Problem says why the certificate would be refused, if it would.
	Problem string `json:"problem,omitempty"`
}

// List describes the CA, node and client certificates in dir, each checked
// against dir's ca.crt at now.
func List(dir string, now time.Time) ([]Info, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("certs directory: %w", err)
	}
	var out []Info
	ca, caErr := LoadCA(dir)
	if _, err := os.Stat(filepath.Join(dir, CACert)); err == nil {
		info := Info{File: CACert, Kind: "ca", KeyPresent: exists(filepath.Join(dir, CAKey))}
		if caErr != nil {
			info.Problem = caErr.Error()
		} else {
			info.Name, info.NotBefore, info.NotAfter = ca.Subject.CommonName, ca.NotBefore, ca.NotAfter
			if now.After(ca.NotAfter) {
				info.Problem = "expired"
			}
		}
		out = append(out, info)
	}
	files := []string{}
	if exists(filepath.Join(dir, NodeCert)) {
		files = append(files, NodeCert)
	}
	names, err := ClientNames(dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		files = append(files, ClientCert(n))
	}
	for _, f := range files {
		info := Info{File: f, Kind: "client"}
		keyFile := strings.TrimSuffix(f, ".crt") + ".key"
		usage := x509.ExtKeyUsageClientAuth
		if f == NodeCert {
			info.Kind, usage = "node", x509.ExtKeyUsageServerAuth
		}
		info.KeyPresent = exists(filepath.Join(dir, keyFile))
		cert, err := loadCert(filepath.Join(dir, f))
		if err != nil {
			info.Problem = err.Error()
			out = append(out, info)
			continue
		}
		info.Name, info.NotBefore, info.NotAfter = cert.Subject.CommonName, cert.NotBefore, cert.NotAfter
		info.Hosts = append(info.Hosts, cert.DNSNames...)
		for _, ip := range cert.IPAddresses {
			info.Hosts = append(info.Hosts, ip.String())
		}
		if role, err := RoleOf(cert); err != nil {
			info.Problem = err.Error()
		} else if role != RoleNone {
			info.Role = role.String()
		} else if info.Kind == "client" {
			info.Problem = "carries no role"
		}
		switch {
		case info.Problem != "":
		case caErr != nil:
			info.Problem = "cannot check: " + caErr.Error()
		default:
			if err := Verify(cert, ca, usage, now); err != nil {
				info.Problem = err.Error()
			} else if !info.KeyPresent {
				info.Problem = keyFile + " is missing"
			}
		}
		out = append(out, info)
	}
	slices.SortStableFunc(out, func(a, b Info) int { return kindOrder(a.Kind) - kindOrder(b.Kind) })
	return out, nil
}

func kindOrder(k string) int {
	return strings.Index("ca node client", k)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
