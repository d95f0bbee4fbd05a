package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
)

// checkKey refuses an empty key before asking the agent.
func checkKey(key string) error {
	if key == "" {
		return usagef("the key must not be empty")
	}
	return nil
}

func newPutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key (VALUE - reads the value from stdin)",
		Example: `  hearsay put greeting hello
  hearsay put config/app.json - < app.json`,
		Args: exactArgs("KEY", "VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if err := checkKey(key); err != nil {
				return err
			}
			value := []byte(args[1])
			if args[1] == "-" {
				var err error
				if value, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return fmt.Errorf("reading the value from stdin: %w", err)
				}
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodPut, c.kvURL(key), bytes.NewReader(value),
				http.Header{"Content-Type": {"application/octet-stream"}}, false)
			if err != nil {
				return fmt.Errorf("put %q: %w", key, err)
			}
			defer resp.Body.Close()
			return printKeyVersion(cmd, g, resp)
		},
	}
}

func newDelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key",
		Args:    exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if err := checkKey(key); err != nil {
				return err
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodDelete, c.kvURL(key), nil, nil, false)
			if err != nil {
				return fmt.Errorf("del %q: %w", key, err)
			}
			defer resp.Body.Close()
			return printKeyVersion(cmd, g, resp)
		},
	}
}

// printKeyVersion prints the response to a put or del: as it came with
// --json, else "OK" and the version.
func printKeyVersion(cmd *cobra.Command, g *globals, resp *http.Response) error {
	var kv agent.KeyVersion
	var raw []byte
	if err := decodeBody(resp, &kv, &raw); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if g.json {
		_, err := out.Write(withNewline(raw))
		return err
	}
	_, err := fmt.Fprintf(out, "OK (version %s)\n", kv.Version)
	return err
}

func newGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: `Print the value of a key on stdout, byte for byte. With --json, print
{"key", "value" (base64), "version"}. Exits 1 if the key is absent.`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if err := checkKey(key); err != nil {
				return err
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			accept := "application/octet-stream"
			if g.json {
				accept = "application/json"
			}
			resp, err := c.do(cmd.Context(), http.MethodGet, c.kvURL(key), nil, http.Header{"Accept": {accept}}, false)
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.code == http.StatusNotFound {
					return fmt.Errorf("key %q not found", key)
				}
				return fmt.Errorf("get %q: %w", key, err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("get %q: reading the value: %w", key, err)
			}
			out := cmd.OutOrStdout()
			if g.json {
				data = withNewline(data)
			} else if isTerminal(out) && !bytes.HasSuffix(data, []byte("\n")) {
				data = append(data, '\n') // keep the prompt on its own line
			}
			_, err = out.Write(data)
			return err
		},
	}
}

func newScanCmd(g *globals) *cobra.Command {
	var prefix string
	var limit int
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List keys and values by prefix",
		Long: `List live keys with the given prefix and their values, in key order, one
"key<TAB>value" line each. Without --limit, all of them (fetched page by
page). With --json, print an array of {"key", "value" (base64), "version"}.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit %d: must not be negative", limit)
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			all := []agent.EntryJSON{}
			start, remaining := "", limit
			for {
				page := agent.DefaultScanLimit
				if limit > 0 {
					page = min(remaining, agent.MaxScanLimit)
				}
				q := url.Values{"prefix": {prefix}, "limit": {strconv.Itoa(page)}}
				if start != "" {
					q.Set("start", start)
				}
				var sr agent.ScanResponse
				if err := c.getJSON(cmd.Context(), c.routeURL("/v1/kv", q), &sr, nil); err != nil {
					return fmt.Errorf("scan %q: %w", prefix, err)
				}
				for _, e := range sr.Entries {
					if g.json {
						all = append(all, e)
						continue
					}
					v, err := base64.StdEncoding.DecodeString(e.Value)
					if err != nil {
						return fmt.Errorf("scan: value of %q is not base64: %w", e.Key, err)
					}
					fmt.Fprintf(out, "%s\t%s\n", e.Key, v)
				}
				remaining -= len(sr.Entries)
				if sr.Next == "" || (limit > 0 && remaining <= 0) {
					break
				}
				start = sr.Next
			}
			if g.json {
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				return enc.Encode(all)
			}
			return out.Flush()
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "list keys starting with this prefix (default: all keys)")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many entries (0: all)")
	return cmd
}

func newWatchCmd(g *globals) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream changes to keys with a prefix, until Ctrl-C",
		Long: `Stream every change to keys with the given prefix, written here or learned
from peers, one line each: "put<TAB>key<TAB>value" or "delete<TAB>key".
With --json, one JSON object {"key","value"(base64),"version","deleted"}
per line. Runs until interrupted.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(g)
			if err != nil {
				return err
			}
			return watch(cmd.Context(), c, prefix, g.json, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "watch keys starting with this prefix (default: all keys)")
	return cmd
}

// watch reads the agent's Server-Sent Events until ctx is done.
// It tells on stderr when the watch is in place.
func watch(ctx context.Context, c *client, prefix string, asJSON bool, w, stderr io.Writer) error {
	u := c.routeURL("/v1/watch", url.Values{"prefix": {prefix}})
	resp, err := c.do(ctx, http.MethodGet, u, nil, http.Header{"Accept": {"text/event-stream"}}, true)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %q: %w", prefix, err)
	}
	defer resp.Body.Close()
	fmt.Fprintf(stderr, "watching keys with prefix %q at %s; Ctrl-C to stop\n", prefix, c.addr)
	r := bufio.NewReader(resp.Body)
	var event string
	var data strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: a normal end
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("watch %q: the agent at %s closed the stream", prefix, c.addr)
			}
			return fmt.Errorf("watch %q: reading the stream: %w", prefix, err)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if err := printEvent(event, data.String(), asJSON, w); err != nil {
				return fmt.Errorf("watch %q: %w", prefix, err)
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, ":"):
			// comment: greeting or heartbeat
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// printEvent prints one event; an error or shutdown event ends the watch
// with the agent's message.
func printEvent(event, data string, asJSON bool, w io.Writer) error {
	switch event {
	case "":
		return nil
	case "put", "delete":
	default:
		var er agent.ErrorResponse
		if json.Unmarshal([]byte(data), &er) == nil && er.Error != "" {
			return errors.New(er.Error)
		}
		return fmt.Errorf("agent sent %s: %s", event, data)
	}
	if asJSON {
		_, err := fmt.Fprintln(w, data)
		return err
	}
	var ev agent.EventJSON
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		return fmt.Errorf("decoding event: %w", err)
	}
	if ev.Deleted {
		_, err := fmt.Fprintf(w, "delete\t%s\n", ev.Key)
		return err
	}
	v, err := base64.StdEncoding.DecodeString(ev.Value)
	if err != nil {
		return fmt.Errorf("value of %q is not base64: %w", ev.Key, err)
	}
	_, err = fmt.Fprintf(w, "put\t%s\t%s\n", ev.Key, v)
	return err
}

func withNewline(b []byte) []byte {
	if bytes.HasSuffix(b, []byte("\n")) {
		return b
	}
	return append(b, '\n')
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
