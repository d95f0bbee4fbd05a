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
cluster gracefully and exits 0. The replica lives in --data-dir; without it
the agent refuses to start unless --in-memory says that a restart may lose
everything.

Every flag can also be set by an environment variable, HEARSAY_ and the flag
name in upper snake case (HEARSAY_DATA_DIR for --data-dir), or by a YAML or
JSON config file (--config or HEARSAY_CONFIG) whose keys are the flag names.
Precedence: flag, then environment, then config file, then default.

Secure by default: gossip on an address beyond loopback (--bind, --advertise;
the default binds 0.0.0.0) needs node certificates (--certs-dir) or
--secret-key-file, the same key on every node (hearsay keys generate --out
key), and the HTTP API may listen beyond loopback only with --certs-dir.
--insecure lifts both checks.

With --certs-dir DIR (made by hearsay cert: ca.crt, node.crt, node.key) the
agent's name is node.crt's CN, and the HTTP API is served over TLS 1.3 to
clients presenting a certificate signed by ca.crt: role read may get, scan,
watch and read members, status and metrics; write may also put and delete;
admin may do everything. Without a certificate a request gets 401, with too
low a role 403; /v1/health/live and /v1/health/ready need none. It is then a
certificate cluster: gossip is authenticated by node.crt (peers without a
node certificate of the same CA are refused), every record and membership
claim is signed by its origin and verified by every receiver, and nodes can
be revoked (hearsay cert revoke). Add --secret-key-file to encrypt gossip too.`,
		Example: `  hearsay keys generate --out /etc/hearsay/key
  hearsay agent --name n1 --data-dir /var/lib/hearsay --secret-key-file /etc/hearsay/key
  hearsay agent --name n2 --data-dir /var/lib/hearsay --bind 10.0.0.2:7946 --join 10.0.0.1:7946 --secret-key-file /etc/hearsay/key
  hearsay agent --name dev --in-memory --bind 127.0.0.1:7946     # loopback only: no key needed; a restart loses the data
  hearsay agent --certs-dir /etc/hearsay/certs --data-dir /var/lib/hearsay --http 10.0.0.1:7947 --bind 10.0.0.1:7946 --secret-key-file /etc/hearsay/key
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
