package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/agent"
)

func newMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster members as the agent sees them",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(g)
			if err != nil {
				return err
			}
			var members []hearsay.Member
			var raw []byte
			if err := c.getJSON(cmd.Context(), c.routeURL("/v1/members", nil), &members, &raw); err != nil {
				return fmt.Errorf("members: %w", err)
			}
			out := cmd.OutOrStdout()
			if g.json {
				_, err := out.Write(withNewline(raw))
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tSTATE\tINCARNATION")
			for _, m := range members {
				name := m.Name
				if m.Self {
					name += " (self)"
				}
				state := string(m.State)
				if m.Quarantined {
					state += " quarantined"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", name, m.Address, state, m.Incarnation)
			}
			return tw.Flush()
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the agent's node status",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(g)
			if err != nil {
				return err
			}
			var st agent.StatusResponse
			var raw []byte
			if err := c.getJSON(cmd.Context(), c.routeURL("/v1/status", nil), &st, &raw); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			out := cmd.OutOrStdout()
			if g.json {
				_, err := out.Write(withNewline(raw))
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "name:\t%s\n", st.Name)
			fmt.Fprintf(tw, "node id:\t%s\n", st.NodeID)
			fmt.Fprintf(tw, "gossip address:\t%s\n", st.Address)
			fmt.Fprintf(tw, "http address:\t%s\n", st.HTTPAddress)
			switch {
			case st.DataDir != "":
				fmt.Fprintf(tw, "storage:\t%s (%s)\n", st.Storage, st.DataDir)
			case st.Storage == agent.StorageMemory:
				fmt.Fprintf(tw, "storage:\t%s (--in-memory: a restart loses it)\n", st.Storage)
			}
			fmt.Fprintf(tw, "ready:\t%t\n", st.Ready)
			for _, r := range st.NotReady {
				fmt.Fprintf(tw, "  not ready:\t%s\n", r)
			}
			fmt.Fprintf(tw, "joined:\t%t\n", st.Joined)
			if st.LastJoinError != "" {
				fmt.Fprintf(tw, "last join error:\t%s\n", st.LastJoinError)
			}
			fmt.Fprintf(tw, "members:\t%d (%d alive)\n", st.Members, st.Alive)
			fmt.Fprintf(tw, "outbox:\t%d\n", st.Outbox)
			fmt.Fprintf(tw, "revision:\t%d\n", st.Revision)
			if !st.Started.IsZero() {
				fmt.Fprintf(tw, "started:\t%s (up %s)\n", st.Started.Format(time.RFC3339), time.Since(st.Started).Round(time.Second))
			}
			fmt.Fprintf(tw, "version:\t%s\n", st.Version)
			return tw.Flush()
		},
	}
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this hearsay binary",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if g.json {
				enc := json.NewEncoder(out)
				return enc.Encode(map[string]string{
					"version":  Version,
					"go":       runtime.Version(),
					"platform": runtime.GOOS + "/" + runtime.GOARCH,
				})
			}
			_, err := fmt.Fprintln(out, versionLine())
			return err
		},
	}
}

// versionLine is what `hearsay version` and `hearsay --version` print.
func versionLine() string { return "hearsay version " + versionDetails() }

// versionDetails is the version, the Go version and the platform.
func versionDetails() string {
	return fmt.Sprintf("%s (%s, %s/%s)", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
