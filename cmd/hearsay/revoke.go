package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
	"github.com/hearsaydb/hearsay/internal/certs"
)

// newRevokeCmd is `hearsay cert revoke`: a revocation signed with the CA's
// key, sent to an agent that gossips it to every member.
func newRevokeCmd(g *globals) *cobra.Command {
	var name, caKey string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a node's certificate: every member expels it and refuses its frames",
		Long: `Make a revocation of node --name, signed with the CA's key (ca.key in
--certs-dir, or --ca-key), and send it to the agent at --addr (as an admin
client of --certs-dir), which gossips it to every member. Every member checks
the CA's signature, shows the node as revoked in hearsay members, refuses its
frames and connections ("certificate revoked") and expels it for good;
members that were down receive it when they come back. The revocation is
also kept in --certs-dir/revoked.list (see hearsay cert list).

A revocation withdraws the name: every certificate of that name is revoked.
Bring a repaired node back under a new name.`,
		Args:        noArgs,
		Annotations: map[string]string{clientAnnotation: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.certsDir == "" {
				return usagef("--certs-dir is required (or %s)", envCertsDir)
			}
			if name == "" {
				return usagef("--name is required: the node to revoke")
			}
			ca, err := certs.LoadCA(g.certsDir)
			if err != nil {
				return err
			}
			key, err := certs.LoadCAKey(g.certsDir, caKey)
			if err != nil {
				return fmt.Errorf("the CA's key signs revocations: %w", err)
			}
			if !bytes.Equal(key.Public().(ed25519.PublicKey), ca.PublicKey.(ed25519.PublicKey)) {
				return fmt.Errorf("the CA key is not the key of %s", certs.CACert)
			}
			rev, err := certs.NewRevocation(name, time.Now(), key)
			if err != nil {
				return usagef("%v", err)
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			body, err := json.Marshal(agent.RevocationRequest{Revocation: base64.StdEncoding.EncodeToString(rev.Marshal())})
			if err != nil {
				return fmt.Errorf("encode request: %w", err)
			}
			resp, err := c.do(cmd.Context(), http.MethodPost, c.routeURL("/v1/revocations", nil), bytes.NewReader(body),
				http.Header{"Content-Type": {"application/json"}}, false)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var out agent.RevocationResponse
			var raw []byte
			if err := decodeBody(resp, &out, &raw); err != nil {
				return err
			}
			if err := certs.AppendRevocation(g.certsDir, rev); err != nil {
				return err
			}
			if g.json {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s from %s (version %s); it is gossiping to every member\n", out.Name, out.At.UTC().Format(time.RFC3339), out.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the node to revoke (its certificate's CN)")
	cmd.Flags().StringVar(&caKey, "ca-key", "", "the CA's key (default: ca.key in --certs-dir)")
	return cmd
}
