package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/agent"
	"github.com/hearsaydb/hearsay/internal/transport"
)

// newKeysCmd is `hearsay keys`: the cluster keys that encrypt and
// authenticate gossip (agent --secret-key-file), and the rotation of the
// keyring of a running cluster.
func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate cluster keys for --secret-key-file; list and rotate the keyring of a running cluster",
		Long: `Gossip between agents is encrypted and authenticated with AES-GCM when every
agent is started with --secret-key-file naming a file that holds the same key:
the base64 encoding of 16, 24 or 32 random bytes. Nodes without the key, or
with another, cannot join, read or inject anything.

A running cluster changes its key without downtime, as Serf does: list, install,
use and remove act on the keyring of every live member, through the agent at
--addr (admin role under --certs-dir). Each member keeps its keyring in the file
"keyring" of its data directory, which takes precedence over --secret-key-file
at the next start. To rotate: install the new key, use it, remove the old one.

A member that was down during a rotation still has the old key: its peers refuse
it, and its join error says "wrong key". Copy the file "keyring" of a current
member into its data directory (mode 0600), or remove its own and start it with
--secret-key-file holding the cluster's current key.`,
		Example: `  hearsay keys generate --out /etc/hearsay/key     # written with mode 0600
  hearsay keys check /etc/hearsay/key
  hearsay keys id /etc/hearsay/key                 # the id keys list shows
  hearsay keys generate --out new.key
  hearsay keys install new.key                     # every member accepts it
  hearsay keys list                                # note the ids
  hearsay keys use 1a2b3c4d                        # every member sends with it
  hearsay keys remove 9f8e7d6c                     # the old key, everywhere`,
	}
	var out string
	var keep bool
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a new random 32-byte key, base64, or write it to a file (mode 0600)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var k [32]byte
			if _, err := rand.Read(k[:]); err != nil {
				return fmt.Errorf("generate key: %w", err)
			}
			line := base64.StdEncoding.EncodeToString(k[:]) + "\n"
			if out == "" {
				_, err := fmt.Fprint(cmd.OutOrStdout(), line)
				return err
			}
			if keep {
				if _, err := (&agent.Config{SecretKeyFile: out}).ReadSecretKey(); err == nil {
					_, err = fmt.Fprintf(cmd.ErrOrStderr(), "%s already holds a valid key; kept\n", out)
					return err
				}
			}
			return writeKeyFile(out, line)
		},
	}
	gen.Flags().StringVarP(&out, "out", "o", "", "write the key to this file, readable by its owner only (0600); an existing file is not overwritten")
	gen.Flags().BoolVar(&keep, "keep-existing", false, "with --out: if the file already holds a valid key, keep it and succeed (for init containers)")
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Check that FILE holds a key an agent accepts",
		Args:  exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := agent.Config{SecretKeyFile: args[0]}
			k, err := c.ReadSecretKey()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: a valid %d-bit AES key, id %s\n", args[0], 8*len(k), hearsay.KeyID(k))
			return err
		},
	}
	id := &cobra.Command{
		Use:   "id FILE",
		Short: "Print the id of the key in FILE, as keys list shows it (the first 8 hex digits of its SHA-256)",
		Args:  exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := agent.Config{SecretKeyFile: args[0]}
			k, err := c.ReadSecretKey()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), hearsay.KeyID(k))
			return err
		},
	}
	cmd.AddCommand(withGlobals(gen), withGlobals(check), withGlobals(id),
		newKeysListCmd(g), newKeysInstallCmd(g), newKeysUseCmd(g), newKeysRemoveCmd(g))
	return cmd
}

func newKeysListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the keys of every live member's keyring: id, primary on how many, installed on how many",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return keysCall(cmd, g, "list", http.MethodGet, "/v1/keys", nil)
		},
	}
}

func newKeysInstallCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "install FILE",
		Short: "Install the key in FILE (as made by keys generate) on every live member, as a secondary key",
		Args:  exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("keys install: %w", err)
			}
			key, err := transport.ParseKey(string(data))
			if err != nil {
				return fmt.Errorf("keys install: %s: %w", args[0], err)
			}
			body, _ := json.Marshal(agent.InstallKeyRequest{Key: base64.StdEncoding.EncodeToString(key)})
			return keysCall(cmd, g, "install", http.MethodPost, "/v1/keys", body)
		},
	}
}

func newKeysUseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "use ID",
		Short: "Make the installed key ID (keys list) the primary key of every live member",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, _ := json.Marshal(agent.UseKeyRequest{ID: args[0]})
			return keysCall(cmd, g, "use", http.MethodPut, "/v1/keys/primary", body)
		},
	}
}

func newKeysRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove the key ID (keys list) from every live member's keyring; the primary key cannot be removed",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return keysCall(cmd, g, "remove", http.MethodDelete, "/v1/keys/"+url.PathEscape(strings.TrimSpace(args[0])), nil)
		},
	}
}

// keysCall sends one keyring request to the agent and prints the outcome
// on every member. The agent is given most of --timeout to gather the
// members' answers, so that it answers before the client gives up.
func keysCall(cmd *cobra.Command, g *globals, op, method, path string, body []byte) error {
	c, err := newClient(g)
	if err != nil {
		return err
	}
	wait := c.timeout * 4 / 5
	u := c.routeURL(path, url.Values{"timeout": {wait.String()}})
	header := http.Header{"Accept": {"application/json"}}
	var rd io.Reader
	if body != nil {
		header.Set("Content-Type", "application/json")
		rd = bytes.NewReader(body)
	}
	resp, err := c.do(cmd.Context(), method, u, rd, header, false)
	if err != nil {
		return fmt.Errorf("keys %s: %w", op, err)
	}
	defer resp.Body.Close()
	var kr agent.KeysResponse
	var raw []byte
	if err := decodeBody(resp, &kr, &raw); err != nil {
		return fmt.Errorf("keys %s: %w", op, err)
	}
	out := cmd.OutOrStdout()
	if g.json {
		_, err := out.Write(withNewline(raw))
		return err
	}
	printKeys(out, op, kr.KeyResponse)
	return nil
}

// printKeys prints a key operation's outcome: the keys and how many
// members hold them, and any disagreement between members.
func printKeys(out io.Writer, op string, r hearsay.KeyResponse) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPRIMARY\tINSTALLED")
	answered := r.Responses - r.Errors
	for _, k := range r.Keys {
		note := ""
		switch {
		case k.Primary > 0 && k.Primary < answered:
			note = "(primary on some members only)"
		case k.Installed < answered:
			note = "(not installed on every member)"
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%d/%d", k.ID, k.Primary, answered, k.Installed, answered)
		if note != "" {
			fmt.Fprint(tw, "\t"+note)
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "%s: %d of %d members answered", op, r.Responses, r.Nodes)
	if r.Errors > 0 {
		fmt.Fprintf(out, ", %d failed", r.Errors)
	}
	fmt.Fprintln(out)
	for _, m := range r.Members {
		if m.Error != "" {
			fmt.Fprintf(out, "  %s: %s\n", m.Name, m.Error)
		}
	}
}

// writeKeyFile creates path with mode 0600 and writes the key line to it;
// it never overwrites a file.
func writeKeyFile(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}
