package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/hearsaydb/hearsay/agent"
)

// keyFlags are the flags of the commands that take keys: --key-base64
// reads KEY arguments, --prefix and --start as base64, for keys that a
// command line cannot hold (a NUL byte) or a shell makes awkward, and
// prints keys base64.
type keyFlags struct {
	base64 bool
}

func (k *keyFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&k.base64, "key-base64", false, "keys (KEY, --prefix, --start) are given and printed base64, for keys that are not text (a NUL byte, invalid UTF-8)")
}

// parse decodes a key argument or flag: as it is, or base64.
func (k *keyFlags) parse(what, s string) ([]byte, error) {
	if !k.base64 {
		return []byte(s), nil
	}
	b, err := agent.DecodeKey(s)
	if err != nil {
		return nil, usagef("%s %q with --key-base64: %v", what, s, err)
	}
	return b, nil
}

// parseKey decodes a KEY argument and refuses an empty key before asking
// the agent.
func (k *keyFlags) parseKey(s string) ([]byte, error) {
	key, err := k.parse("KEY", s)
	if err != nil {
		return nil, err
	}
	if len(key) == 0 {
		return nil, usagef("the key must not be empty")
	}
	return key, nil
}

// show renders a key for human-readable output: base64 with --key-base64,
// else as text (see displayText).
func (k *keyFlags) show(key []byte) string {
	if k.base64 {
		return base64.StdEncoding.EncodeToString(key)
	}
	return displayText(key)
}

// displayText renders a key or value on one line of human-readable output:
// as it is when it is printable UTF-8 without tabs or line breaks (and does
// not start with a double quote), else Go-quoted ("\xff\x00", "a\tb"), so
// that binary data never reaches a terminal raw and one entry stays one
// line. --json, or get for a value, gives the exact bytes.
func displayText(b []byte) string {
	if len(b) > 0 && b[0] != '"' && utf8.Valid(b) {
		plain := true
		for _, r := range string(b) {
			if !unicode.IsPrint(r) {
				plain = false
				break
			}
		}
		if plain {
			return string(b)
		}
	}
	return strconv.Quote(string(b))
}

// jsonKey decodes the "key" (base64) of a JSON answer.
func jsonKey(b64 string) ([]byte, error) {
	k, err := agent.DecodeKey(b64)
	if err != nil {
		return nil, fmt.Errorf("the agent sent key %q: %w", b64, err)
	}
	return k, nil
}

func newPutCmd(g *globals) *cobra.Command {
	var kf keyFlags
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key (VALUE - reads the value from stdin)",
		Example: `  hearsay put greeting hello
  hearsay put config/app.json - < app.json
  hearsay put --key-base64 AP8= value          # the key is the bytes 0x00 0xff`,
		Args: exactArgs("KEY", "VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := kf.parseKey(args[0])
			if err != nil {
				return err
			}
			value := []byte(args[1])
			if args[1] == "-" {
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
				return fmt.Errorf("put %s: %w", agent.QuoteKey(key), err)
			}
			defer resp.Body.Close()
			return printKeyVersion(cmd, g, resp)
		},
	}
	kf.register(cmd)
	return cmd
}

func newDelCmd(g *globals) *cobra.Command {
	var kf keyFlags
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key",
		Args:    exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := kf.parseKey(args[0])
			if err != nil {
				return err
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodDelete, c.kvURL(key), nil, nil, false)
			if err != nil {
				return fmt.Errorf("del %s: %w", agent.QuoteKey(key), err)
			}
			defer resp.Body.Close()
			return printKeyVersion(cmd, g, resp)
		},
	}
	kf.register(cmd)
	return cmd
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
	var kf keyFlags
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: `Print the value of a key on stdout, byte for byte. With --json, print
{"key" (base64), "key_text" (when the key is UTF-8), "value" (base64),
"version"}. Exits 1 if the key is absent, 2 on an error.`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := kf.parseKey(args[0])
			if err != nil {
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
				if errors.As(err, &ae) && ae.absent {
					return absentError{fmt.Errorf("key %s not found", agent.QuoteKey(key))}
				}
				return fmt.Errorf("get %s: %w", agent.QuoteKey(key), err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("get %s: reading the value: %w", agent.QuoteKey(key), err)
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
	kf.register(cmd)
	return cmd
}

func newScanCmd(g *globals) *cobra.Command {
	var kf keyFlags
	var prefixArg, startArg string
	var limit, pageSize int
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List keys and values by prefix",
		Long: `List live keys with the given prefix and their values, in key order, one
"key<TAB>value" line each; a key or value that is not printable text on one
line is shown Go-quoted ("\xff\x00"). Without --limit, all of them (fetched
page by page). With --json, print an array of {"key" (base64), "key_text"
(when the key is UTF-8), "value" (base64), "version"}.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit %d: must not be negative", limit)
			}
			if pageSize < 1 || pageSize > agent.MaxScanLimit {
				return usagef("--page-size %d: want 1 to %d", pageSize, agent.MaxScanLimit)
			}
			prefix, err := kf.parse("--prefix", prefixArg)
			if err != nil {
				return err
			}
			start, err := kf.parse("--start", startArg)
			if err != nil {
				return err
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			all := []agent.EntryJSON{}
			cursor, remaining := "", limit
			for {
				page := pageSize
				if limit > 0 {
					page = min(remaining, pageSize)
				}
				q := url.Values{"prefix": {string(prefix)}, "limit": {strconv.Itoa(page)}}
				if cursor != "" {
					q.Set("cursor", cursor)
				} else if len(start) > 0 {
					q.Set("start", string(start))
				}
				var sr agent.ScanResponse
				if err := c.getJSON(cmd.Context(), c.routeURL("/v1/kv", q), &sr, nil); err != nil {
					return fmt.Errorf("scan %s: %w", agent.QuoteKey(prefix), err)
				}
				for _, e := range sr.Entries {
					if g.json {
						all = append(all, e)
						continue
					}
					k, err := jsonKey(e.Key)
					if err != nil {
						return fmt.Errorf("scan: %w", err)
					}
					v, err := base64.StdEncoding.DecodeString(e.Value)
					if err != nil {
						return fmt.Errorf("scan: value of %s is not base64: %w", agent.QuoteKey(k), err)
					}
					fmt.Fprintf(out, "%s\t%s\n", kf.show(k), displayText(v))
				}
				remaining -= len(sr.Entries)
				if sr.Next == "" || (limit > 0 && remaining <= 0) {
					break
				}
				cursor = sr.Next
			}
			if g.json {
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				return enc.Encode(all)
			}
			return out.Flush()
		},
	}
	cmd.Flags().StringVar(&prefixArg, "prefix", "", "list keys starting with this prefix (default: all keys)")
	cmd.Flags().StringVar(&startArg, "start", "", "list keys from this one on, in key order")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many entries (0: all)")
	cmd.Flags().IntVar(&pageSize, "page-size", agent.DefaultScanLimit, fmt.Sprintf("entries fetched per request, 1 to %d", agent.MaxScanLimit))
	kf.register(cmd)
	return cmd
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
