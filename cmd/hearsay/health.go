package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
)

func newHealthCmd(g *globals) *cobra.Command {
	var ready bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that the agent is live, or with --ready ready (exit 0), else exit 1",
		Long: `Check the agent at --addr, for orchestrators and scripts.

Without --ready it asks GET /v1/health/live: exit 0 while the agent serves.
With --ready it asks GET /v1/health/ready: exit 0 when the node is joined,
caught up and writable; otherwise exit 1 and print why (for example a seed
that does not answer, or refuses this node's key).

Use it as a Docker HEALTHCHECK (the image has no shell: the binary checks
itself) or as a Kubernetes exec probe; Kubernetes httpGet probes can ask
the two routes directly.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(g)
			if err != nil {
				return err
			}
			path := "/v1/health/live"
			if ready {
				path = "/v1/health/ready"
			}
			code, body, err := c.health(cmd.Context(), path)
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			out := cmd.OutOrStdout()
			if g.json {
				if _, err := out.Write(withNewline(body)); err != nil {
					return err
				}
			}
			var rr agent.ReadyResponse
			if ready && json.Unmarshal(body, &rr) != nil {
				return fmt.Errorf("health: agent at %s answered %d with %q", c.addr, code, strings.TrimSpace(string(body)))
			}
			switch {
			case code == http.StatusOK && (!ready || rr.Ready):
				if !g.json {
					what := "live"
					if ready {
						what = "ready"
					}
					fmt.Fprintln(out, what)
				}
				return nil
			case ready && code == http.StatusServiceUnavailable:
				if !g.json {
					fmt.Fprintln(out, "not ready:")
					for _, r := range rr.Reasons {
						fmt.Fprintf(out, "  %s\n", r)
					}
				}
				return fmt.Errorf("agent at %s is not ready", c.addr)
			}
			return fmt.Errorf("health: agent at %s answered %d to %s: %s", c.addr, code, path, strings.TrimSpace(string(body)))
		},
	}
	cmd.Flags().BoolVar(&ready, "ready", false, "check readiness (joined, caught up, writable) instead of liveness")
	return cmd
}

// health GETs a health route and returns its status code and body, 503
// included (a not-ready answer is an answer, not an error).
func (c *client) health(ctx context.Context, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.routeURL(path, nil).String(), nil)
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "hearsay-cli/"+Version)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, fmt.Errorf("reading response of %s: %w", path, err)
	}
	return resp.StatusCode, body, nil
}
