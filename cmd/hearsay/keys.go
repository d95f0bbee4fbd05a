package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"

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
		Example: `  hearsay keys generate --out /etc/hearsay/key     # written with mode 0600
  hearsay keys check /etc/hearsay/key`,
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
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: a valid %d-bit AES key\n", args[0], 8*len(k))
			return err
		},
	}
	cmd.AddCommand(gen, check)
	return cmd
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
