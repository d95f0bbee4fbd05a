package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
)

func newAgentCmd() *cobra.Command {
	cfg := agent.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a hearsay node and its HTTP API",
		Long: `Run a hearsay node: it keeps a replica, gossips with its peers on --bind and
serves the HTTP API on --http, until SIGINT or SIGTERM, then leaves the
cluster gracefully and exits 0.

Every flag can also be set by an environment variable, HEARSAY_ and the flag
name in upper snake case (HEARSAY_DATA_DIR for --data-dir), or by a YAML or
JSON config file (--config or HEARSAY_CONFIG) whose keys are the flag names.
Precedence: flag, then environment, then config file, then default.

Secure by default: gossip on an address beyond loopback (--bind, --advertise;
the default binds 0.0.0.0) needs --secret-key-file, the same key on every node
(hearsay keys generate --out key), and the HTTP API, which has no client
authentication yet, stays on loopback. --insecure lifts both checks.`,
		Example: `  hearsay keys generate --out /etc/hearsay/key
  hearsay agent --name n1 --data-dir /var/lib/hearsay --secret-key-file /etc/hearsay/key
  hearsay agent --name n2 --bind 10.0.0.2:7946 --join 10.0.0.1:7946 --secret-key-file /etc/hearsay/key
  hearsay agent --name dev --bind 127.0.0.1:7946     # loopback only: no key needed
  HEARSAY_CONFIG=/etc/hearsay.yaml hearsay agent`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Load(cmd.Flags(), os.Getenv); err != nil {
				return usageError{err}
			}
			cfg.BuildVersion = Version
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	cfg.RegisterFlags(cmd.Flags())
	return cmd
}
