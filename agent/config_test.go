package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
)

// env is a fake environment for Load.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if cfg.Name != host || cfg.Bind != "0.0.0.0:7946" || cfg.HTTP != "127.0.0.1:7947" ||
		cfg.Cluster != "hearsay" || cfg.MaxValueSize != 1<<20 || cfg.NoSync || cfg.DataDir != "" ||
		cfg.LogLevel != "info" || cfg.LogFormat != "text" || len(cfg.Join) != 0 || cfg.SlowSync != time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, "hearsay.yaml", `
name: from-file
data-dir: /var/lib/from-file
bind: 10.0.0.1:1000
http: 10.0.0.1:1001
cluster: file-cluster
join:
  - 10.0.0.2:7946
  - 10.0.0.3:7946
max-value-size: 64KiB
no-sync: true
log-format: json
`)
	getenv := env(
		"HEARSAY_CONFIG", file,
		"HEARSAY_BIND", "10.0.0.9:2000", // env beats file
		"HEARSAY_HTTP", "10.0.0.9:2001", // flag beats env
		"HEARSAY_LOG_LEVEL", "debug",
		"HEARSAY_DATA_DIR", "", // empty: unset
	)
	cfg, err := ParseConfig([]string{"--http", "127.0.0.1:3001", "--name", "from-flag", "--no-sync=false"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Name":         "from-flag",
		"DataDir":      "/var/lib/from-file",
		"Bind":         "10.0.0.9:2000",
		"HTTP":         "127.0.0.1:3001",
		"Cluster":      "file-cluster",
		"Join":         []string{"10.0.0.2:7946", "10.0.0.3:7946"},
		"MaxValueSize": 64 << 10,
		"NoSync":       false,
		"LogLevel":     "debug",
		"LogFormat":    "json",
		"ConfigFile":   file,
	}
	got := reflect.ValueOf(cfg)
	for field, w := range want {
		if g := got.FieldByName(field).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %#v, want %#v", field, g, w)
		}
	}

	// --config beats HEARSAY_CONFIG; JSON files work too.
	jsonFile := writeFile(t, "hearsay.json", `{"name": "json-name", "join": "a:1,b:2", "max-value-size": 2048}`)
	cfg, err = ParseConfig([]string{"--config", jsonFile}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "json-name" || !reflect.DeepEqual(cfg.Join, []string{"a:1", "b:2"}) || cfg.MaxValueSize != 2048 || cfg.Cluster != "hearsay" {
		t.Errorf("from JSON file: %+v", cfg)
	}

	// A join flag replaces the file's list rather than adding to it.
	cfg, err = ParseConfig([]string{"--config", file, "--join", "c:3"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Join, []string{"c:3"}) {
		t.Errorf("join = %v, want [c:3]", cfg.Join)
	}
}

func TestConfigErrors(t *testing.T) {
	unknown := writeFile(t, "unknown.yaml", "name: n\ndata_dir: /x\n")
	nested := writeFile(t, "nested.yaml", "name:\n  first: n\n")
	self := writeFile(t, "self.yaml", "config: other.yaml\n")
	broken := writeFile(t, "broken.yaml", "name: [unclosed\n")
	badValue := writeFile(t, "bad.yaml", "max-value-size: lots\n")
	cases := []struct {
		name   string
		args   []string
		env    []string
		errHas []string
	}{
		{"unknown config key", []string{"--config", unknown}, nil, []string{`unknown key "data_dir"`, `did you mean "data-dir"`}},
		{"config naming a config", []string{"--config", self}, nil, []string{`unknown key "config"`}},
		{"nested value", []string{"--config", nested}, nil, []string{`key "name"`}},
		{"broken YAML", []string{"--config", broken}, nil, []string{"not valid YAML"}},
		{"bad value in file", []string{"--config", badValue}, nil, []string{`key "max-value-size"`, "invalid size"}},
		{"missing config file", []string{"--config", "/nonexistent/hearsay.yaml"}, nil, []string{"no such file"}},
		{"config from env", nil, []string{"HEARSAY_CONFIG", unknown}, []string{"unknown key"}},
		{"unknown flag", []string{"--nme", "x"}, nil, []string{"unknown flag: --nme"}},
		{"bad size flag", []string{"--max-value-size", "abc"}, nil, []string{"invalid size"}},
		{"zero size flag", []string{"--max-value-size", "0"}, nil, []string{"invalid size"}},
		{"bad bool env", nil, []string{"HEARSAY_NO_SYNC", "maybe"}, []string{"HEARSAY_NO_SYNC"}},
		{"bad level", []string{"--log-level", "loud"}, nil, []string{"--log-level"}},
		{"bad format", []string{"--log-format", "xml"}, nil, []string{"--log-format"}},
		{"bad bind", []string{"--bind", "nowhere"}, nil, []string{"--bind", "host:port"}},
		{"bad http port", []string{"--http", "127.0.0.1:99999"}, nil, []string{"--http", "bad port"}},
		{"join without port", []string{"--join", "10.0.0.1"}, nil, []string{"--join"}},
		{"join port 0", []string{"--join", "10.0.0.1:0"}, nil, []string{"--join"}},
		{"empty name", []string{"--name", ""}, nil, []string{"--name"}},
		{"stray argument", []string{"extra"}, nil, []string{"unexpected arguments"}},
		{"negative slow sync", []string{"--slow-sync", "-1s"}, nil, []string{"--slow-sync", "must not be negative"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig(c.args, env(c.env...))
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range c.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestEnvVar(t *testing.T) {
	for flag, want := range map[string]string{
		"name": "HEARSAY_NAME", "data-dir": "HEARSAY_DATA_DIR", "max-value-size": "HEARSAY_MAX_VALUE_SIZE",
		"no-sync": "HEARSAY_NO_SYNC", "config": "HEARSAY_CONFIG",
	} {
		if got := EnvVar(flag); got != want {
			t.Errorf("EnvVar(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "1048576": 1 << 20, "1MiB": 1 << 20, "64KiB": 64 << 10, "64k": 64 << 10, "2MB": 2e6, "512B": 512} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "KiB", "1.5MiB", "10GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}

func TestSecretKeyFile(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SecretKeyFile = writeFile(t, "key", "MDEyMzQ1Njc4OWFiY2RlZg==\n") // 16 bytes
	key, err := cfg.ReadSecretKey()
	if err != nil || string(key) != "0123456789abcdef" {
		t.Errorf("ReadSecretKey = %q, %v", key, err)
	}
	cfg.SecretKeyFile = writeFile(t, "short", "c2hvcnQ=")
	if _, err := cfg.ReadSecretKey(); err == nil || !strings.Contains(err.Error(), "want 16, 24 or 32") {
		t.Errorf("short key: %v", err)
	}
}

func TestProtocolFlags(t *testing.T) {
	file := writeFile(t, "c.yaml", "gossip-interval: 50ms\nanti-entropy-mode: pull\nrumor: false\n")
	cfg, err := ParseConfig([]string{"--config", file, "--direct-mail=false", "--fanout", "5", "--anti-entropy-mode", "full", "--retry-join-max", "100ms"},
		env("HEARSAY_SUSPICION_TIMEOUT", "9s", "HEARSAY_TOMBSTONE_GRACE", "48h"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DirectMail || cfg.Rumor || !cfg.AntiEntropy || cfg.Fanout != 5 || cfg.GossipInterval.String() != "50ms" ||
		cfg.AntiEntropyMode != "full" || cfg.SuspicionTimeout.String() != "9s" || cfg.TombstoneGrace.String() != "48h0m0s" {
		t.Fatalf("protocol settings: %+v", cfg)
	}
	ncfg := engine.DefaultConfig()
	applyProtocol(&ncfg, cfg)
	if ncfg.DirectMail || ncfg.RumorMongering || !ncfg.AE.FullExchange || ncfg.Rumor.Fanout != 5 ||
		ncfg.Membership.SuspicionTimeout.String() != "9s" || ncfg.AE.TombstoneGrace.String() != "48h0m0s" ||
		ncfg.Membership.JoinRetryMax.String() != "100ms" || ncfg.Membership.JoinRetryMin > ncfg.Membership.JoinRetryMax {
		t.Fatalf("engine config: %+v", ncfg)
	}
	for _, bad := range [][]string{
		{"--fanout", "0"}, {"--gossip-interval", "0s"}, {"--anti-entropy-mode", "sideways"},
		{"--suspicion-timeout", "-1s"}, {"--tombstone-grace", "0s"}, {"--anti-entropy-interval", "0s"},
		{"--retry-join-max", "-1s"},
	} {
		if _, err := ParseConfig(bad, env()); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(bad[0], "--")) {
			t.Errorf("%v: error %v should name the flag", bad, err)
		}
	}
}

// --plumtree and its windows, from a flag, the environment and a file,
// reach the engine.
func TestPlumtreeFlags(t *testing.T) {
	file := writeFile(t, "c.yaml", "plumtree-ihave-window: 250ms\n")
	cfg, err := ParseConfig([]string{"--config", file, "--plumtree", "--rumor=false"}, env("HEARSAY_PLUMTREE_EAGER_WINDOW", "20ms"))
	if err != nil {
		t.Fatal(err)
	}
	ncfg := engine.DefaultConfig()
	if ncfg.Plumtree {
		t.Fatal("the broadcast tree is on by default")
	}
	applyProtocol(&ncfg, cfg)
	if !ncfg.Plumtree || ncfg.RumorMongering || ncfg.Tree.EagerWindow != 20*time.Millisecond || ncfg.Tree.IHaveWindow != 250*time.Millisecond {
		t.Fatalf("engine config: plumtree %v rumor %v tree %+v", ncfg.Plumtree, ncfg.RumorMongering, ncfg.Tree)
	}
	for _, bad := range [][]string{{"--plumtree-eager-window", "-1s"}, {"--plumtree-ihave-window", "-1ms"}} {
		if _, err := ParseConfig(bad, env()); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(bad[0], "--")) {
			t.Errorf("%v: error %v should name the flag", bad, err)
		}
	}
}

func TestProfileFlag(t *testing.T) {
	cfg, err := ParseConfig(nil, env())
	if err != nil || cfg.Profile != "lan" {
		t.Fatalf("default profile %q, %v", cfg.Profile, err)
	}
	ncfg := engine.DefaultConfig()
	applyProtocol(&ncfg, cfg)
	if ncfg.Membership != membership.LANConfig() {
		t.Errorf("default: membership %+v, want the lan profile", ncfg.Membership)
	}

	// The profile comes from the environment; an explicit flag overrides
	// one of its settings and keeps the others.
	cfg, err = ParseConfig([]string{"--suspicion-timeout", "9s"}, env("HEARSAY_PROFILE", "wan"))
	if err != nil {
		t.Fatal(err)
	}
	ncfg = engine.DefaultConfig()
	applyProtocol(&ncfg, cfg)
	want := membership.WANConfig()
	want.SuspicionTimeout = 9 * time.Second
	if ncfg.Membership != want {
		t.Errorf("wan + --suspicion-timeout 9s: membership %+v, want %+v", ncfg.Membership, want)
	}

	file := writeFile(t, "c.yaml", "profile: local\n")
	cfg, err = ParseConfig([]string{"--config", file}, env())
	if err != nil {
		t.Fatal(err)
	}
	ncfg = engine.DefaultConfig()
	applyProtocol(&ncfg, cfg)
	if ncfg.Membership != membership.LocalConfig() {
		t.Errorf("profile from file: membership %+v, want the local profile", ncfg.Membership)
	}

	_, err = ParseConfig([]string{"--profile", "moon"}, env())
	if err == nil || !strings.Contains(err.Error(), "--profile") || !strings.Contains(err.Error(), "lan, wan, local") {
		t.Errorf("--profile moon: error %v should name the flag and the valid profiles", err)
	}
}

func TestStorageMustBeChosen(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.CheckStorage(); err == nil || !strings.Contains(err.Error(), "--in-memory") || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("no data dir, not in memory: %v", err)
	}
	cfg.InMemory = true
	if err := cfg.CheckStorage(); err != nil {
		t.Errorf("--in-memory: %v", err)
	}
	cfg.DataDir = "/var/lib/hearsay"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "choose one") {
		t.Errorf("--data-dir and --in-memory: %v", err)
	}
	cfg.InMemory = false
	if err := cfg.CheckStorage(); err != nil {
		t.Errorf("--data-dir: %v", err)
	}
	// New refuses to start without either.
	cfg = DefaultConfig()
	cfg.Bind, cfg.HTTP = "127.0.0.1:0", ""
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--in-memory") {
		t.Errorf("New without storage: %v", err)
	}
}

// TestSlowSyncSetting: --slow-sync from a flag, the environment and a
// config file reaches the node's config; 0 turns the report off.
func TestSlowSyncSetting(t *testing.T) {
	file := writeFile(t, "hearsay.yaml", "slow-sync: 250ms\n")
	for _, c := range []struct {
		args []string
		env  []string
		want time.Duration
	}{
		{[]string{"--slow-sync", "2s"}, nil, 2 * time.Second},
		{nil, []string{"HEARSAY_SLOW_SYNC", "500ms"}, 500 * time.Millisecond},
		{[]string{"--config", file}, nil, 250 * time.Millisecond},
		{[]string{"--slow-sync", "0"}, nil, 0},
	} {
		cfg, err := ParseConfig(c.args, env(c.env...))
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if cfg.SlowSync != c.want {
			t.Errorf("%v %v: SlowSync %v, want %v", c.args, c.env, cfg.SlowSync, c.want)
		}
	}
}
