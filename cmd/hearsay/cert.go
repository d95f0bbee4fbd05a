package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/internal/certs"
)

// envCertsDir and envCertName are the environment defaults of --certs-dir
// and --cert-name (the agent reads HEARSAY_CERTS_DIR too).
const (
	envCertsDir = "HEARSAY_CERTS_DIR"
	envCertName = "HEARSAY_CERT_NAME"
)

// newCertCmd is `hearsay cert`: the cluster CA and the node and client
// certificates, in the certs directory of --certs-dir.
func newCertCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Create and list the CA, node and client certificates of a certs directory",
		Long: `A certs directory holds the cluster's CA certificate and the certificates of
one node and of clients, with fixed names:

  ca.crt, ca.key            the cluster CA (keep ca.key off the nodes if you can)
  node.crt, node.key        this node: the certificate's CN is the node's name
  client.NAME.crt/.key      client NAME, with role read, write or admin

Keys are Ed25519 and written with mode 0600; existing files are replaced
only with --overwrite. An agent started with --certs-dir serves its HTTP API
over TLS and asks clients for a certificate signed by ca.crt; the CLI with
--certs-dir presents client.NAME.crt (--cert-name) and checks the agent's
node.crt against ca.crt.

Roles: read may get, scan, watch, and read members, status and metrics;
write may also put and delete; admin may do everything.`,
		Example: `  hearsay cert create-ca --certs-dir certs
  hearsay cert create-node --certs-dir certs --name n1 --host n1.example.com --host 10.0.0.1
  hearsay cert create-client --certs-dir certs --name root --role admin
  hearsay cert list --certs-dir certs
  hearsay cert revoke --certs-dir certs --name n3 --addr n1.example.com:7947
  hearsay cert revoke --certs-dir certs --client ci-bot --addr n1.example.com:7947`,
	}
	// Each create command has its own flag values: a variable shared by
	// three commands would hold the last command's default.
	type createFlags struct {
		caKey     string
		lifetime  time.Duration
		overwrite bool
	}
	common := func(c *cobra.Command, def time.Duration, caKeyUsage string) *createFlags {
		f := &createFlags{}
		c.Flags().DurationVar(&f.lifetime, "lifetime", def, "how long the certificate is valid")
		c.Flags().BoolVar(&f.overwrite, "overwrite", false, "replace existing certificate and key files")
		c.Flags().StringVar(&f.caKey, "ca-key", "", caKeyUsage)
		return f
	}
	opts := func(f *createFlags) (certs.Options, error) {
		if g.certsDir == "" {
			return certs.Options{}, usagef("--certs-dir is required (or %s)", envCertsDir)
		}
		if f.lifetime <= 0 {
			return certs.Options{}, usagef("--lifetime %v: must be positive", f.lifetime)
		}
		return certs.Options{Dir: g.certsDir, CAKeyFile: f.caKey, Validity: f.lifetime, Overwrite: f.overwrite}, nil
	}
	const signedBy = "the CA's key (default: ca.key in --certs-dir)"

	var caFlags *createFlags
	createCA := &cobra.Command{
		Use:   "create-ca",
		Short: "Create the cluster CA: ca.crt and ca.key",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(caFlags)
			if err != nil {
				return err
			}
			c, err := certs.CreateCA(o)
			if err != nil {
				return err
			}
			keyFile := caFlags.caKey
			if keyFile == "" {
				keyFile = filepath.Join(g.certsDir, certs.CAKey)
			}
			return printCreated(cmd, g, filepath.Join(g.certsDir, certs.CACert), keyFile, c)
		},
	}
	caFlags = common(createCA, certs.DefaultCAValidity, "write the CA's key here (default: ca.key in --certs-dir)")

	var name string
	var hosts []string
	var nodeFlags *createFlags
	createNode := &cobra.Command{
		Use:   "create-node",
		Short: "Create this node's certificate, node.crt and node.key, signed by the CA",
		Long: `Create node.crt and node.key, signed by the CA of --certs-dir. The
certificate's CN is the node's name (--name): an agent started with this
directory takes it as its name. --host lists the DNS names and IP addresses
clients use to reach the node's HTTP API (repeat it, or separate with
commas); without it, localhost, 127.0.0.1 and ::1.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(nodeFlags)
			if err != nil {
				return err
			}
			if name == "" {
				return usagef("--name is required: the node's name")
			}
			c, err := certs.CreateNode(o, name, hosts)
			if err != nil {
				return err
			}
			return printCreated(cmd, g, filepath.Join(g.certsDir, certs.NodeCert), filepath.Join(g.certsDir, certs.NodeKey), c)
		},
	}
	createNode.Flags().StringVar(&name, "name", "", "the node's name (the certificate's CN)")
	createNode.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP address of the node (repeatable; default localhost, 127.0.0.1, ::1)")
	nodeFlags = common(createNode, certs.DefaultCertValidity, signedBy)

	var role string
	var clientFlags *createFlags
	createClient := &cobra.Command{
		Use:   "create-client",
		Short: "Create a client certificate with a role: client.NAME.crt and .key",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(clientFlags)
			if err != nil {
				return err
			}
			if name == "" {
				return usagef("--name is required: the client's name")
			}
			r, err := certs.ParseRole(role)
			if err != nil {
				return usagef("--role: %v", err)
			}
			c, err := certs.CreateClient(o, name, r)
			if err != nil {
				return err
			}
			return printCreated(cmd, g, filepath.Join(g.certsDir, certs.ClientCert(name)), filepath.Join(g.certsDir, certs.ClientKey(name)), c)
		},
	}
	createClient.Flags().StringVar(&name, "name", "", "the client's name (the certificate's CN, and the file name)")
	createClient.Flags().StringVar(&role, "role", "", "what the client may do: read, write or admin")
	clientFlags = common(createClient, certs.DefaultCertValidity, signedBy)

	list := &cobra.Command{
		Use:   "list",
		Short: "List the certificates of --certs-dir, checked against its ca.crt",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.certsDir == "" {
				return usagef("--certs-dir is required (or %s)", envCertsDir)
			}
			infos, err := certs.List(g.certsDir, time.Now())
			if err != nil {
				return err
			}
			revs, err := certs.ReadRevocations(g.certsDir)
			if err != nil {
				return err
			}
			for _, r := range revs {
				kind := "revocation"
				if r.Client {
					kind = "client revocation"
				}
				infos = append(infos, certs.Info{File: certs.RevocationFile, Kind: kind, Name: r.Name, NotBefore: r.At,
					Problem: "revoked from " + r.At.UTC().Format(time.RFC3339)})
			}
			out := cmd.OutOrStdout()
			if g.json {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if infos == nil {
					infos = []certs.Info{}
				}
				return enc.Encode(infos)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tKIND\tNAME\tROLE/HOSTS\tEXPIRES\tSTATUS")
			for _, i := range infos {
				detail := i.Role
				if i.Kind == "node" {
					detail = strings.Join(i.Hosts, ",")
				}
				expires, status := "-", "ok"
				if !i.NotAfter.IsZero() {
					expires = i.NotAfter.UTC().Format(time.DateOnly)
				}
				if i.Problem != "" {
					status = i.Problem
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.File, i.Kind, i.Name, orDash(detail), expires, status)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(createCA, createNode, createClient, list, newRevokeCmd(g))
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printCreated reports a new certificate.
func printCreated(cmd *cobra.Command, g *globals, certFile, keyFile string, c *x509.Certificate) error {
	out := cmd.OutOrStdout()
	if g.json {
		enc := json.NewEncoder(out)
		return enc.Encode(map[string]any{"certificate": certFile, "key": keyFile, "name": c.Subject.CommonName, "not_after": c.NotAfter})
	}
	_, err := fmt.Fprintf(out, "wrote %s and %s (mode 0600), %q, valid until %s\n",
		certFile, keyFile, c.Subject.CommonName, c.NotAfter.UTC().Format(time.DateOnly))
	return err
}
