package agent

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/store"
)

// Defaults of the agent's settings.
const (
	// DefaultBind is the default gossip address, UDP and TCP.
	DefaultBind = "0.0.0.0:7946"
	// DefaultHTTP is the default HTTP API address. Loopback only: without
	// --certs-dir the API has no authentication.
	DefaultHTTP = "127.0.0.1:7947"
	// DefaultCluster is the default cluster name.
	DefaultCluster = "hearsay"
	// DefaultShutdownTimeout bounds each step of a graceful stop.
	DefaultShutdownTimeout = 5 * time.Second
	// EnvPrefix prefixes the environment variable of every flag:
	// --data-dir is read from HEARSAY_DATA_DIR.
	EnvPrefix = "HEARSAY_"
)

// Flag names. They are a contract: scripts, environment variables
// (EnvPrefix + upper snake case) and config file keys use them.
const (
	FlagName         = "name"
	FlagDataDir      = "data-dir"
	FlagInMemory     = "in-memory"
	FlagBind         = "bind"
	FlagAdvertise    = "advertise"
	FlagHTTP         = "http"
	FlagJoin         = "join"
	FlagCluster      = "cluster"
	FlagMaxValueSize = "max-value-size"
	FlagNoSync       = "no-sync"
	FlagMinFreeDisk  = "min-free-disk"
	FlagSlowSync     = "slow-sync"
	FlagLogLevel     = "log-level"
	FlagLogFormat    = "log-format"
	FlagSecretKey    = "secret-key-file"
	FlagConfig       = "config"

	// Protocol tuning. Defaults are engine.DefaultConfig's.
	FlagDirectMail       = "direct-mail"
	FlagDirectMailWindow = "direct-mail-window"
	FlagRumor            = "rumor"
	FlagPlumtree         = "plumtree"
	FlagPlumtreeEager    = "plumtree-eager-window"
	FlagPlumtreeIHave    = "plumtree-ihave-window"
	FlagAntiEntropy      = "anti-entropy"
	FlagGossipInterval   = "gossip-interval"
	FlagFanout           = "fanout"
	FlagAEInterval       = "anti-entropy-interval"
	FlagAEMode           = "anti-entropy-mode"
	FlagSuspicionTimeout = "suspicion-timeout"
	FlagProfile          = "profile"
	FlagTombstoneGrace   = "tombstone-grace"
	FlagMaxClockOffset   = "max-clock-offset"
	FlagRetryJoinMax     = "retry-join-max"
)

// fileKeys are the flags a config file may set, sorted.
var fileKeys = []string{
	FlagAdvertise, FlagAntiEntropy, FlagAEInterval, FlagAEMode, FlagBind, FlagCluster,
	FlagDataDir, FlagDirectMail, FlagDirectMailWindow, FlagFanout, FlagGossipInterval, FlagHTTP, FlagInMemory, FlagJoin,
	FlagLogFormat, FlagLogLevel, FlagMaxClockOffset, FlagMaxValueSize, FlagMinFreeDisk, FlagName,
	FlagNoSync, FlagPlumtree, FlagPlumtreeEager, FlagPlumtreeIHave, FlagProfile, FlagRetryJoinMax, FlagRumor, FlagSecretKey, FlagSlowSync,
	FlagSuspicionTimeout, FlagTombstoneGrace,
}

// Config configures an Agent. Every field but the last group has a
// command-line flag (see RegisterFlags), an environment variable and a
// config file key; Load resolves them with the precedence
// flag > environment > config file > default.
type Config struct {
	// Name is the member name, unique in the cluster. Default: the host name.
	Name string
	// DataDir keeps the replica. Empty needs InMemory.
	DataDir string
	// InMemory keeps the replica in memory only, so that a restart loses
	// it: it must be asked for, since an agent without DataDir would
	// otherwise lose everything silently. Not with DataDir.
	InMemory bool
	// Bind is the gossip address to listen on, host:port (port 0: any).
	Bind string
	// Advertise is the gossip address peers use to reach this node, when it
	// differs from Bind. Empty means derived from Bind.
	Advertise string
	// HTTP is the address of the HTTP API, host:port. Empty means no
	// listener: serve Handler yourself.
	HTTP string
	// Join lists gossip addresses of members to join at start.
	Join []string
	// Cluster names the cluster; nodes of other clusters are ignored.
	Cluster string
	// MaxValueSize is the largest value accepted, in bytes.
	MaxValueSize int
	// NoSync turns off fsync before acknowledging a write (faster; a crash
	// may lose acknowledged writes).
	NoSync bool
	// MinFreeDisk is the free space on the data directory's volume below
	// which writes are refused (507) until space is freed. 0 means the
	// larger of 256 MiB and 2% of the volume; negative turns the check off.
	MinFreeDisk int64
	// SlowSync is the sync latency above which the node reports its disk
	// as slow (status slow_sync, a readiness reason, a warning at most
	// once a minute); 0 turns the report off. Default 1 s.
	SlowSync time.Duration
	// SecretKeyFile names a file holding the cluster's secret key, base64
	// of 16, 24 or 32 bytes: gossip is then encrypted and authenticated,
	// and nodes without the key cannot take part. Empty: no encryption.
	// A keyring file in DataDir (hearsay.KeyringFile, written by the key
	// operations of hearsay keys) takes precedence over it.
	SecretKeyFile string
	// CertsDir is a certs directory (see hearsay cert): ca.crt, node.crt and
	// node.key. With it the HTTP API is served over TLS 1.3 with node.crt,
	// clients must present a certificate signed by ca.crt and are
	// authorised by its role, and the node's name is node.crt's CN (Name
	// empty takes it; another name is an error). The cluster is then a
	// certificate cluster (hearsay.Identity): every record is signed with
	// node.key, every received record is verified against its origin's
	// certificate, and the node id is derived from the name. Gossip is not
	// yet authenticated by certificates: it still needs SecretKeyFile.
	CertsDir string
	// Insecure lets the agent run exposed without authentication: gossip
	// beyond loopback without SecretKeyFile, the HTTP API beyond loopback
	// without CertsDir.
	// Without it such a configuration is refused (see bounds.go).
	Insecure bool
	// Bounds caps the resources clients and peers can make the agent hold.
	Bounds Bounds
	// Quarantine configures peer scoring and quarantine.
	Quarantine Quarantine
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string
	// ConfigFile is the YAML or JSON file that Load read, if any.
	ConfigFile string

	// Protocol tuning: which mechanisms run and how fast. Each has a flag.
	DirectMail       bool
	DirectMailWindow time.Duration
	Rumor            bool
	// Plumtree spreads updates along an epidemic broadcast tree (package
	// plumtree), with its eager and announcement windows; an alternative
	// to Rumor (switch that off) beyond the direct-mail limit.
	Plumtree            bool
	PlumtreeEagerWindow time.Duration
	PlumtreeIHaveWindow time.Duration
	AntiEntropy         bool
	GossipInterval      time.Duration
	Fanout              int
	AntiEntropyInterval time.Duration
	// AntiEntropyMode is push, pull, push-pull or full (push-pull without
	// digests: both sides send every record).
	AntiEntropyMode string
	// Profile names the failure-detector preset the protocol starts from:
	// lan (the default), wan or local (see membership.Profile). The
	// settings below override it when given.
	Profile string
	// SuspicionTimeout overrides the profile's shortest suspicion timeout
	// when positive; 0 keeps the profile's.
	SuspicionTimeout time.Duration
	TombstoneGrace   time.Duration
	// MaxClockOffset is how far this node's clock may be from its peers'
	// (the median measured offset) before it refuses writes; 0: no check.
	MaxClockOffset time.Duration
	// RetryJoinMax is the longest wait between two join attempts: joining
	// retries with a backoff doubling up to it until a seed answers. 0 keeps
	// the profile's (10 s on lan).
	RetryJoinMax time.Duration

	// Logger, when set, receives the logs, and LogLevel and LogFormat are
	// ignored. Not a flag.
	Logger *slog.Logger
	// BuildVersion is reported by /v1/status. Not a flag.
	BuildVersion string
	// ShutdownTimeout bounds each step of a graceful stop (leave, HTTP
	// shutdown). Zero means DefaultShutdownTimeout. Not a flag.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the defaults: name = host name, gossip on
// 0.0.0.0:7946, HTTP on 127.0.0.1:7947, values up to 1 MiB, durable writes,
// info logs as text.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	pc := engine.DefaultConfig()
	return Config{
		Name:         host,
		Bind:         DefaultBind,
		HTTP:         DefaultHTTP,
		Cluster:      DefaultCluster,
		MaxValueSize: store.DefaultMaxValueSize,
		SlowSync:     hearsay.DefaultSlowSync,
		LogLevel:     "info",
		LogFormat:    "text",
		Bounds:       DefaultBounds(),
		Quarantine:   DefaultQuarantine(),

		DirectMail:          pc.DirectMail,
		DirectMailWindow:    pc.DirectMailWindow,
		Rumor:               pc.RumorMongering,
		Plumtree:            pc.Plumtree,
		PlumtreeEagerWindow: pc.Tree.EagerWindow,
		PlumtreeIHaveWindow: pc.Tree.IHaveWindow,
		AntiEntropy:         pc.AntiEntropy,
		GossipInterval:      pc.Rumor.Interval,
		Fanout:              pc.Rumor.Fanout,
		AntiEntropyInterval: pc.AE.Interval,
		AntiEntropyMode:     pc.AE.Mode.String(),
		Profile:             membership.ProfileLAN,
		TombstoneGrace:      pc.AE.TombstoneGrace,
		MaxClockOffset:      pc.MaxClockOffset,
	}
}

// RegisterFlags defines the agent's flags on fs, bound to c's fields, with
// c's current values as defaults. Call it on a DefaultConfig, parse fs, then
// call Load.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Name, FlagName, c.Name, "member name, unique in the cluster")
	fs.StringVar(&c.DataDir, FlagDataDir, c.DataDir, "directory of the replica (required unless --in-memory)")
	fs.BoolVar(&c.InMemory, FlagInMemory, c.InMemory, "keep the replica in memory only, without --data-dir: a restart loses it (tests, demos)")
	fs.StringVar(&c.Bind, FlagBind, c.Bind, "gossip address to listen on, UDP and TCP (host:port)")
	fs.StringVar(&c.Advertise, FlagAdvertise, c.Advertise, "gossip address peers use to reach this node, if not the bind address")
	fs.StringVar(&c.HTTP, FlagHTTP, c.HTTP, "HTTP API address (host:port)")
	fs.StringSliceVar(&c.Join, FlagJoin, c.Join, "gossip addresses of members to join, comma separated")
	fs.StringVar(&c.Cluster, FlagCluster, c.Cluster, "cluster name; nodes of other clusters are ignored")
	fs.Var((*sizeValue)(&c.MaxValueSize), FlagMaxValueSize, "largest value accepted, in bytes (suffixes KiB, MiB allowed)")
	fs.BoolVar(&c.NoSync, FlagNoSync, c.NoSync, "do not fsync before acknowledging writes (a crash may lose them)")
	fs.Var((*freeSpaceValue)(&c.MinFreeDisk), FlagMinFreeDisk, "free space below which writes are refused with 507 until space is freed: a size (256MiB, 10GiB), auto (the larger of 256 MiB and 2% of the volume) or off")
	fs.DurationVar(&c.SlowSync, FlagSlowSync, c.SlowSync, "report the disk as slow (status slow_sync, not ready, a warning at most once a minute) while the p99 of its syncs over the last minute, or the sync in progress, takes longer than this; writes still go on; 0 disables the report")
	fs.StringVar(&c.SecretKeyFile, FlagSecretKey, c.SecretKeyFile, "file holding the cluster key (base64 of 16, 24 or 32 bytes) that encrypts gossip; the file keyring that hearsay keys leaves in --data-dir takes precedence")
	fs.StringVar(&c.LogLevel, FlagLogLevel, c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, FlagLogFormat, c.LogFormat, "log format: text or json")
	fs.BoolVar(&c.DirectMail, FlagDirectMail, c.DirectMail, "send each write at once to every member (small clusters)")
	fs.DurationVar(&c.DirectMailWindow, FlagDirectMailWindow, c.DirectMailWindow, "batch the writes of this window into one direct mail per member: fewer messages for at most this much more replication latency (0: mail at once)")
	fs.BoolVar(&c.Rumor, FlagRumor, c.Rumor, "spread updates by rumor mongering")
	fs.BoolVar(&c.Plumtree, FlagPlumtree, c.Plumtree, "spread updates along an epidemic broadcast tree (one copy per node, announcements to the others); use with --rumor=false")
	fs.DurationVar(&c.PlumtreeEagerWindow, FlagPlumtreeEager, c.PlumtreeEagerWindow, "plumtree: batch the updates of this window into one push per tree link (0: at once)")
	fs.DurationVar(&c.PlumtreeIHaveWindow, FlagPlumtreeIHave, c.PlumtreeIHaveWindow, "plumtree: batch announcements of this window into one message per lazy peer")
	fs.BoolVar(&c.AntiEntropy, FlagAntiEntropy, c.AntiEntropy, "start periodic anti-entropy exchanges (answering peers' is always on)")
	fs.DurationVar(&c.GossipInterval, FlagGossipInterval, c.GossipInterval, "rumor-mongering round")
	fs.IntVar(&c.Fanout, FlagFanout, c.Fanout, "peers each rumor round contacts")
	fs.DurationVar(&c.AntiEntropyInterval, FlagAEInterval, c.AntiEntropyInterval, "time between the anti-entropy exchanges this node starts")
	fs.StringVar(&c.AntiEntropyMode, FlagAEMode, c.AntiEntropyMode, "anti-entropy direction: push, pull, push-pull, or full (push-pull sending every record)")
	fs.StringVar(&c.Profile, FlagProfile, c.Profile, "failure-detector preset: "+strings.Join(membership.Profiles(), ", ")+" (the flags below override it)")
	fs.DurationVar(&c.SuspicionTimeout, FlagSuspicionTimeout, c.SuspicionTimeout, "how long a suspected member has to refute before it is declared dead (scaled up with log of cluster size); 0: the profile's")
	fs.DurationVar(&c.TombstoneGrace, FlagTombstoneGrace, c.TombstoneGrace, "how long deletes are remembered; a node away longer must resynchronise before serving")
	fs.DurationVar(&c.MaxClockOffset, FlagMaxClockOffset, c.MaxClockOffset, "refuse writes while this node's clock is further than this from its peers' (median measured offset); 0 disables the check")
	fs.DurationVar(&c.RetryJoinMax, FlagRetryJoinMax, c.RetryJoinMax, "longest wait between join attempts; joining retries with backoff until a seed of --join answers; 0: the profile's")
	c.registerBoundFlags(fs)
	c.registerQuarantineFlags(fs)
	c.registerCertFlags(fs)
	fs.StringVar(&c.ConfigFile, FlagConfig, c.ConfigFile, "YAML or JSON config file, keys are flag names (env "+EnvVar(FlagConfig)+")")
}

// EnvVar returns the environment variable read for a flag:
// EnvVar("data-dir") is "HEARSAY_DATA_DIR".
func EnvVar(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Load completes a Config whose flags (registered by RegisterFlags on fs)
// have been parsed: every flag not given on the command line is taken from
// its environment variable if set and not empty, else from the config file
// (--config, or HEARSAY_CONFIG) if it has the key, else keeps its default.
// getenv is usually os.Getenv. Load then validates the result.
func (c *Config) Load(fs *pflag.FlagSet, getenv func(string) string) error {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if !fs.Changed(FlagConfig) {
		if v := getenv(EnvVar(FlagConfig)); v != "" {
			c.ConfigFile = v
		}
	}
	var file map[string]string
	if c.ConfigFile != "" {
		var err error
		if file, err = readConfigFile(c.ConfigFile); err != nil {
			return err
		}
	}
	_, nameInFile := file[FlagName]
	nameGiven := fs.Changed(FlagName) || getenv(EnvVar(FlagName)) != "" || nameInFile
	for _, name := range fileKeys {
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("agent config: flag --%s is not registered", name)
		}
		if fs.Changed(name) {
			continue
		}
		if v := getenv(EnvVar(name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("environment %s=%q: %w", EnvVar(name), v, err)
			}
			continue
		}
		if v, ok := file[name]; ok {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("config file %s: key %q: value %q: %w", c.ConfigFile, name, v, err)
			}
		}
	}
	if c.CertsDir != "" && !nameGiven {
		c.Name = "" // New takes the name from node.crt, not the host name
	}
	return c.Validate()
}

// ParseConfig builds a Config from command-line arguments (flags only),
// the environment and the config file, over DefaultConfig. It is what the
// agent command does, without cobra.
func ParseConfig(args []string, getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := cfg.Load(fs, getenv); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// readConfigFile reads a YAML (or JSON, which YAML includes) file of flag
// names to values, and returns the values as flag strings.
func readConfigFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: not valid YAML or JSON: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if !slices.Contains(fileKeys, k) {
			hint := ""
			if k == FlagConfig {
				hint = " (a config file cannot name another)"
			} else if alt := strings.ReplaceAll(k, "_", "-"); slices.Contains(fileKeys, alt) {
				hint = fmt.Sprintf(" (did you mean %q?)", alt)
			}
			return nil, fmt.Errorf("config file %s: unknown key %q%s; valid keys: %s",
				path, k, hint, strings.Join(fileKeys, ", "))
		}
		if v == nil {
			continue
		}
		s, err := flagString(v)
		if err != nil {
			return nil, fmt.Errorf("config file %s: key %q: %w", path, k, err)
		}
		out[k] = s
	}
	return out, nil
}

// flagString renders a YAML scalar or list as the string a flag parses.
func flagString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		if v != float64(int64(v)) {
			return "", fmt.Errorf("%v is not a whole number", v)
		}
		return strconv.FormatInt(int64(v), 10), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, err := flagString(e)
			if err != nil {
				return "", err
			}
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("list element %q contains a comma", s)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("unsupported value of type %T", v)
	}
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" && c.CertsDir == "" {
		errs = append(errs, errors.New("--name is required (the host name could not be read)"))
	}
	if c.DataDir != "" && c.InMemory {
		errs = append(errs, fmt.Errorf("--%s %q and --%s: choose one", FlagDataDir, c.DataDir, FlagInMemory))
	}
	if err := checkHostPort(c.Bind, false); err != nil {
		errs = append(errs, fmt.Errorf("--bind %q: %w", c.Bind, err))
	}
	if c.Advertise != "" {
		if err := checkHostPort(c.Advertise, true); err != nil {
			errs = append(errs, fmt.Errorf("--advertise %q: %w", c.Advertise, err))
		}
	}
	if c.HTTP != "" {
		if err := checkHostPort(c.HTTP, false); err != nil {
			errs = append(errs, fmt.Errorf("--http %q: %w", c.HTTP, err))
		}
	}
	for _, j := range c.Join {
		if err := checkHostPort(j, true); err != nil {
			errs = append(errs, fmt.Errorf("--join %q: %w", j, err))
		}
	}
	if c.Cluster == "" {
		errs = append(errs, errors.New("--cluster must not be empty"))
	}
	if c.MaxValueSize <= 0 {
		errs = append(errs, fmt.Errorf("--max-value-size %d: must be positive", c.MaxValueSize))
	}
	if c.Logger == nil {
		if _, err := parseLevel(c.LogLevel); err != nil {
			errs = append(errs, err)
		}
		if c.LogFormat != "text" && c.LogFormat != "json" {
			errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
		}
	}
	if c.GossipInterval <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must be positive", FlagGossipInterval, c.GossipInterval))
	}
	if c.Fanout < 1 {
		errs = append(errs, fmt.Errorf("--%s %d: must be at least 1", FlagFanout, c.Fanout))
	}
	if c.PlumtreeEagerWindow < 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must not be negative", FlagPlumtreeEager, c.PlumtreeEagerWindow))
	}
	if c.PlumtreeIHaveWindow < 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must not be negative", FlagPlumtreeIHave, c.PlumtreeIHaveWindow))
	}
	if c.AntiEntropyInterval <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must be positive", FlagAEInterval, c.AntiEntropyInterval))
	}
	if c.AntiEntropyMode != "full" {
		if _, err := antientropy.ParseMode(c.AntiEntropyMode); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want push, pull, push-pull or full", FlagAEMode, c.AntiEntropyMode))
		}
	}
	if _, err := membership.Profile(c.Profile); err != nil {
		errs = append(errs, fmt.Errorf("--%s: %w", FlagProfile, err))
	}
	if c.SuspicionTimeout < 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must not be negative (0: the profile's)", FlagSuspicionTimeout, c.SuspicionTimeout))
	}
	if c.TombstoneGrace <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must be positive", FlagTombstoneGrace, c.TombstoneGrace))
	}
	if c.SlowSync < 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must not be negative (0 disables the report)", FlagSlowSync, c.SlowSync))
	}
	if c.MaxClockOffset < 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must not be negative", FlagMaxClockOffset, c.MaxClockOffset))
	}
	if c.RetryJoinMax < 0 {
		errs = append(errs, fmt.Errorf("--%s %v: must not be negative", FlagRetryJoinMax, c.RetryJoinMax))
	}
	errs = append(errs, c.validateBounds()...)
	errs = append(errs, c.validateQuarantine()...)
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout %v: must not be negative", c.ShutdownTimeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid agent config: %w", errors.Join(errs...))
	}
	return nil
}

// CheckStorage refuses a configuration that keeps the replica nowhere
// durable without saying so: no DataDir needs InMemory, so that a
// forgotten --data-dir does not lose everything at the next restart. New
// calls it; it is apart from Validate so that a parsed configuration can be
// inspected before it is complete.
func (c *Config) CheckStorage() error {
	if c.DataDir == "" && !c.InMemory {
		return fmt.Errorf("no --%s: give --%s DIR to keep the replica on disk, or --%s to keep it in memory only (a restart loses it)",
			FlagDataDir, FlagDataDir, FlagInMemory)
	}
	return nil
}

// checkHostPort checks a host:port address; needPort refuses port 0.
func checkHostPort(addr string, needPort bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	if needPort && p == 0 {
		return errors.New("port 0 cannot be reached")
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(s) {
	case "debug":
		l = slog.LevelDebug
	case "info", "":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// ReadSecretKey reads the key named by SecretKeyFile; nil without one.
func (c *Config) ReadSecretKey() ([]byte, error) {
	if c.SecretKeyFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.SecretKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--secret-key-file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("--secret-key-file %s: not base64: %w", c.SecretKeyFile, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("--secret-key-file %s: key is %d bytes, want 16, 24 or 32 (try: head -c 32 /dev/urandom | base64)", c.SecretKeyFile, len(key))
}

// NewLogger returns the logger the config asks for, writing to w: Logger if
// set, else a text or JSON handler at LogLevel.
func (c *Config) NewLogger(w io.Writer) (*slog.Logger, error) {
	if c.Logger != nil {
		return c.Logger, nil
	}
	level, err := parseLevel(c.LogLevel)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
}

// sizeValue is a byte count flag: 1048576, 1MiB, 64KiB, 1MB, 512B.
type sizeValue int

func (s *sizeValue) String() string { return strconv.Itoa(int(*s)) }

func (s *sizeValue) Type() string { return "bytes" }

func (s *sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeValue(n)
	return nil
}

func parseSize(v string) (int, error) {
	t := strings.TrimSpace(v)
	mult := 1
	units := []struct {
		suffix string
		mult   int
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	for _, u := range units {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q: want a positive number of bytes, like 1048576 or 1MiB", v)
	}
	if n > int64(1<<31)/int64(mult) {
		return 0, fmt.Errorf("invalid size %q: too large", v)
	}
	return int(n) * mult, nil
}

// freeSpaceValue is the --min-free-disk flag: a byte count (suffixes as
// sizeValue, without its 2 GiB limit), "auto" (0) or "off" (-1).
type freeSpaceValue int64

func (f *freeSpaceValue) String() string {
	switch {
	case *f == 0:
		return "auto"
	case *f < 0:
		return "off"
	}
	return strconv.FormatInt(int64(*f), 10)
}

func (f *freeSpaceValue) Type() string { return "bytes" }

func (f *freeSpaceValue) Set(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "auto", "":
		*f = 0
		return nil
	case "off", "0":
		*f = -1
		return nil
	}
	t := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	} {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid --%s %q: want a size like 256MiB or 10GiB, auto, or off", FlagMinFreeDisk, v)
	}
	*f = freeSpaceValue(n * mult)
	return nil
}
