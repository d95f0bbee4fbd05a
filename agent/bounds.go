package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/transport"
)

// Flag names of the resource bounds and of --insecure (see Bounds).
const (
	FlagInsecure               = "insecure"
	FlagMaxGossipConns         = "max-gossip-conns"
	FlagMaxGossipConnsPerIP    = "max-gossip-conns-per-ip"
	FlagMaxHTTPConns           = "max-http-conns"
	FlagMaxWatchers            = "max-watchers"
	FlagHTTPReadTimeout        = "http-read-timeout"
	FlagMaxHTTPBodyMemory      = "max-http-body-memory"
	FlagMaxMembers             = "max-members"
	FlagMaxNewMembersPerSecond = "max-new-members-per-second"
)

// Defaults of the HTTP bounds.
const (
	// DefaultMaxHTTPConns leaves room for many clients and watchers while
	// keeping file descriptors for gossip and the store.
	DefaultMaxHTTPConns = 1024
	// DefaultMaxWatchers bounds watch streams (keys and members).
	DefaultMaxWatchers = 256
	// DefaultHTTPReadTimeout is the time to read a request's body: a
	// 1 MiB value at 35 KiB/s.
	DefaultHTTPReadTimeout = 30 * time.Second
	// DefaultMaxHTTPBodyMemory bounds the request bodies held at once:
	// 64 maximum-size values.
	DefaultMaxHTTPBodyMemory = 64 << 20
	// MaxHeaderBytes bounds a request's headers; keys (1 KiB, escaped up to
	// 3 KiB) fit many times over.
	MaxHeaderBytes = 64 << 10
	// maxReadHeaderTimeout bounds the time to read a request's headers.
	maxReadHeaderTimeout = 10 * time.Second
)

// boundFileKeys are the config-file keys of the bounds' flags.
var boundFileKeys = []string{
	FlagInsecure, FlagMaxGossipConns, FlagMaxGossipConnsPerIP, FlagMaxHTTPConns, FlagMaxWatchers,
	FlagHTTPReadTimeout, FlagMaxHTTPBodyMemory, FlagMaxMembers, FlagMaxNewMembersPerSecond,
}

func init() {
	// Kept apart from the list in config.go so the two merge cleanly.
	fileKeys = append(fileKeys, boundFileKeys...)
	slices.Sort(fileKeys)
}

// Bounds caps what clients and peers can make the agent hold: every
// resource that grows with input has a bound, a flag and a metric (see
// docs/ARCHITECTURE.md, "Bounds").
type Bounds struct {
	// MaxGossipConns and MaxGossipConnsPerIP cap the accepted gossip TCP
	// connections, in all and per source IP.
	MaxGossipConns      int
	MaxGossipConnsPerIP int
	// MaxHTTPConns caps the HTTP connections open at once; beyond it a new
	// connection is answered 503 and closed.
	MaxHTTPConns int
	// MaxWatchers caps the watch streams (/v1/watch and
	// /v1/members?watch=1) open at once; beyond it a watch gets 503.
	MaxWatchers int
	// HTTPReadTimeout is how long a request has to send its body (and its
	// headers, at most 10 s); a body that trickles is cut off.
	HTTPReadTimeout time.Duration
	// MaxHTTPBodyMemory caps the bytes of request bodies held at once over
	// all requests; a write beyond it gets 503 and may retry.
	MaxHTTPBodyMemory int
	// MaxMembers and MaxNewMembersPerSecond cap the member view and the new
	// members one sender may add per second (membership.Config).
	MaxMembers             int
	MaxNewMembersPerSecond int
}

// DefaultBounds returns the default bounds.
func DefaultBounds() Bounds {
	return Bounds{
		MaxGossipConns:         transport.DefaultMaxConns,
		MaxGossipConnsPerIP:    transport.DefaultMaxConnsPerIP,
		MaxHTTPConns:           DefaultMaxHTTPConns,
		MaxWatchers:            DefaultMaxWatchers,
		HTTPReadTimeout:        DefaultHTTPReadTimeout,
		MaxHTTPBodyMemory:      DefaultMaxHTTPBodyMemory,
		MaxMembers:             membership.DefaultMaxMembers,
		MaxNewMembersPerSecond: membership.DefaultMaxNewMembersPerSecond,
	}
}

// registerBoundFlags defines --insecure and the bounds' flags.
func (c *Config) registerBoundFlags(fs *pflag.FlagSet) {
	b := &c.Bounds
	fs.BoolVar(&c.Insecure, FlagInsecure, c.Insecure, "allow gossip beyond loopback without --secret-key-file or --certs-dir, and the HTTP API beyond loopback without --certs-dir (no client authentication): anyone who reaches them can read, write and join")
	fs.IntVar(&b.MaxGossipConns, FlagMaxGossipConns, b.MaxGossipConns, "most gossip TCP connections accepted at once")
	fs.IntVar(&b.MaxGossipConnsPerIP, FlagMaxGossipConnsPerIP, b.MaxGossipConnsPerIP, "most gossip TCP connections accepted at once from one IP")
	fs.IntVar(&b.MaxHTTPConns, FlagMaxHTTPConns, b.MaxHTTPConns, "most HTTP connections open at once; more are answered 503 and closed")
	fs.IntVar(&b.MaxWatchers, FlagMaxWatchers, b.MaxWatchers, "most watch streams open at once; more are answered 503")
	fs.DurationVar(&b.HTTPReadTimeout, FlagHTTPReadTimeout, b.HTTPReadTimeout, "time a request has to send its body (headers: at most 10s); slower requests are cut off")
	fs.Var((*sizeValue)(&b.MaxHTTPBodyMemory), FlagMaxHTTPBodyMemory, "request-body bytes held at once over all requests; writes beyond it get 503 (suffixes KiB, MiB allowed)")
	fs.IntVar(&b.MaxMembers, FlagMaxMembers, b.MaxMembers, "most members in the view; news of more is refused")
	fs.IntVar(&b.MaxNewMembersPerSecond, FlagMaxNewMembersPerSecond, b.MaxNewMembersPerSecond, "most new members one peer may introduce per second by gossip (its own join and list replies excepted)")
}

// validateBounds checks the bounds.
func (c *Config) validateBounds() []error {
	var errs []error
	b := c.Bounds
	for _, v := range []struct {
		flag string
		n    int
	}{
		{FlagMaxGossipConns, b.MaxGossipConns}, {FlagMaxGossipConnsPerIP, b.MaxGossipConnsPerIP},
		{FlagMaxHTTPConns, b.MaxHTTPConns}, {FlagMaxWatchers, b.MaxWatchers},
		{FlagMaxHTTPBodyMemory, b.MaxHTTPBodyMemory}, {FlagMaxMembers, b.MaxMembers},
		{FlagMaxNewMembersPerSecond, b.MaxNewMembersPerSecond},
	} {
		if v.n < 1 {
			errs = append(errs, fmt.Errorf("--%s %d: must be at least 1", v.flag, v.n))
		}
	}
	if b.HTTPReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must be positive", FlagHTTPReadTimeout, b.HTTPReadTimeout))
	}
	if b.MaxHTTPBodyMemory > 0 && b.MaxHTTPBodyMemory < c.MaxValueSize {
		errs = append(errs, fmt.Errorf("--%s %d: must hold at least one value of --%s (%d bytes)", FlagMaxHTTPBodyMemory, b.MaxHTTPBodyMemory, FlagMaxValueSize, c.MaxValueSize))
	}
	return errs
}

// CheckExposure refuses a configuration that exposes the agent without
// authentication, unless Insecure is set: gossip (Bind or Advertise) beyond
// loopback without transport credentials (SecretKeyFile, a shared keyring,
// or CertsDir, node certificates that sign every frame), or the HTTP API
// beyond loopback without CertsDir (TLS and client certificates). New
// calls it; the error names the ways out.
func (c *Config) CheckExposure() error {
	if c.Insecure {
		return nil
	}
	var errs []error
	if c.SecretKeyFile == "" && c.CertsDir == "" && !c.hasKeyringFile() {
		for _, a := range []struct{ flag, addr string }{{FlagBind, c.Bind}, {FlagAdvertise, c.Advertise}} {
			if a.addr != "" && !isLoopback(a.addr) {
				errs = append(errs, fmt.Errorf("--%s %s is not a loopback address and gossip has no authentication: anyone who reaches it could join the cluster, write and delete. "+
					"Give every node a certificate of one cluster CA (hearsay cert create-ca, create-node; --%s DIR), or the same key (hearsay keys generate --out key; --%s key), or pass --%s to run without authentication", a.flag, a.addr, FlagCertsDir, FlagSecretKey, FlagInsecure))
				break
			}
		}
	}
	if c.HTTP != "" && !isLoopback(c.HTTP) && c.CertsDir == "" {
		errs = append(errs, fmt.Errorf("--%s %s is not a loopback address and the HTTP API has no client authentication without certificates: anyone who reaches it could read, write and delete. "+
			"Give the agent a certs directory (hearsay cert create-ca, create-node, create-client; --%s DIR) to serve HTTPS to clients with certificates. Serve HTTP on loopback, or pass --%s", FlagHTTP, c.HTTP, FlagCertsDir, FlagInsecure))
	}
	if len(errs) > 0 {
		return fmt.Errorf("refusing to start exposed without authentication: %w", errors.Join(errs...))
	}
	return nil
}

// hasKeyringFile reports whether the data directory holds a keyring file
// (left by hearsay keys): it encrypts gossip, and takes precedence over
// SecretKeyFile.
func (c *Config) hasKeyringFile() bool {
	if c.DataDir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(c.DataDir, hearsay.KeyringFile))
	return err == nil
}

// isLoopback reports whether addr's host is a loopback IP or "localhost".
// An unspecified host (0.0.0.0, ::, empty) listens on every interface, and
// a DNS name may resolve anywhere: neither is loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// insecureWarning is logged at start by an agent given --insecure.
func (c *Config) insecureWarning() []any {
	var exposed []string
	if c.SecretKeyFile == "" && c.CertsDir == "" && !c.hasKeyringFile() && (!isLoopback(c.Bind) || (c.Advertise != "" && !isLoopback(c.Advertise))) {
		exposed = append(exposed, "gossip on "+c.Bind+" without a key or certificates: anyone who reaches it can join, write, delete and inject members")
	}
	if c.HTTP != "" && !isLoopback(c.HTTP) && c.CertsDir == "" {
		exposed = append(exposed, "the HTTP API on "+c.HTTP+" without client authentication: anyone who reaches it can read, write and delete")
	}
	return []any{"exposed", exposed}
}

// warnKeyFileMode warns when the key file can be read by others than its
// owner.
func warnKeyFileMode(log *slog.Logger, path string) {
	if path == "" {
		return
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the secret key file can be read by other users; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
}

// applyBounds carries the gossip and membership bounds into the node's
// configuration, after applyProtocol.
func applyBounds(nc *hearsay.Config, cfg Config) {
	nc.MaxGossipConns = cfg.Bounds.MaxGossipConns
	nc.MaxGossipConnsPerIP = cfg.Bounds.MaxGossipConnsPerIP
	nc.Protocol.Membership.MaxMembers = cfg.Bounds.MaxMembers
	nc.Protocol.Membership.MaxNewMembersPerSecond = cfg.Bounds.MaxNewMembersPerSecond
}
