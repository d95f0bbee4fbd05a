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
	var name, client, caKey string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a node's certificate (--name) or a client's (--client) across the cluster",
		Long: `Make a revocation of node --name, or of client --client, signed with the
CA's key (ca.key in --certs-dir, or --ca-key), and send it to the agent at
--addr (as an admin client of --certs-dir), which gossips it to every member;
members that were down receive it when they come back, and it survives
restarts. The revocation is also kept in --certs-dir/revoked.list (see
hearsay cert list).

A node's revocation: every member checks the CA's signature, shows the node
as revoked in hearsay members, refuses its frames and connections
("certificate revoked") and expels it for good.

A client's revocation: every agent refuses every request made with a client
certificate of that name (401, "client certificate ... is revoked"), on
connections already open too. GET /v1/revocations lists what an agent knows.

A revocation withdraws the name: every certificate of that name is revoked.
Bring a repaired node, or a client whose key leaked, back under a new name.`,
		Args:        noArgs,
		Annotations: map[string]string{clientAnnotation: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.certsDir == "" {
				return usagef("--certs-dir is required (or %s)", envCertsDir)
			}
			switch {
			case name == "" && client == "":
				return usagef("--name (a node) or --client (a client certificate) is required: what to revoke")
			case name != "" && client != "":
				return usagef("--name and --client: revoke one node or one client at a time")
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
			newRev, what := certs.NewRevocation, name
			if client != "" {
				newRev, what = certs.NewClientRevocation, client
			}
			rev, err := newRev(what, time.Now(), key)
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
			kind := "node"
			if out.Client {
				kind = "client"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s %s from %s (version %s); it is gossiping to every member\n", kind, out.Name, out.At.UTC().Format(time.RFC3339), out.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the node to revoke (its certificate's CN)")
	cmd.Flags().StringVar(&client, "client", "", "the client to revoke (its client certificate's CN, as in client.NAME.crt)")
	cmd.Flags().StringVar(&caKey, "ca-key", "", "the CA's key (default: ca.key in --certs-dir)")
	return cmd
}
