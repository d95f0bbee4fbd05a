package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
)

// newKeysCmd is `hearsay keys`: the cluster keys that encrypt and
// authenticate gossip (agent --secret-key-file).
func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate and check cluster keys for --secret-key-file",
		Long: `Gossip between agents is encrypted and authenticated with AES-GCM when every
agent is started with --secret-key-file naming a file that holds the same key:
the base64 encoding of 16, 24 or 32 random bytes. Nodes without the key, or
with another, cannot join, read or inject anything.`,
		Example: `  hearsay keys generate > /etc/hearsay/key && chmod 600 /etc/hearsay/key
  hearsay keys check /etc/hearsay/key`,
	}
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a new random 32-byte key, base64",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var k [32]byte
			if _, err := rand.Read(k[:]); err != nil {
				return fmt.Errorf("generate key: %w", err)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(k[:]))
			return err
		},
	}
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
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: a valid %d-bit AES key\n", args[0], 8*len(k))
			return err
		},
	}
	cmd.AddCommand(gen, check)
	return cmd
}
