package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearsaydb/hearsay"
)

func TestCheckExposure(t *testing.T) {
	for _, c := range []struct {
		bind, advertise, http, key string
		insecure                   bool
		wantErr                    []string
	}{
		{bind: "127.0.0.1:7946", http: "127.0.0.1:7947"},
		{bind: "[::1]:7946", http: "localhost:7947"},
		{bind: "0.0.0.0:7946", http: "127.0.0.1:7947", wantErr: []string{"--bind 0.0.0.0:7946", "--secret-key-file", "--insecure"}},
		{bind: "0.0.0.0:7946", http: "127.0.0.1:7947", key: "k"},
		{bind: "127.0.0.1:7946", advertise: "10.0.0.1:7946", http: "127.0.0.1:7947", wantErr: []string{"--advertise 10.0.0.1:7946"}},
		{bind: "node1.example:7946", http: "127.0.0.1:7947", wantErr: []string{"--bind node1.example:7946"}},
		{bind: "127.0.0.1:7946", http: "0.0.0.0:7947", key: "k", wantErr: []string{"Serve HTTP on loopback, or pass --insecure"}},
		{bind: "127.0.0.1:7946", http: ":7947", wantErr: []string{"--http :7947"}},
		{bind: "0.0.0.0:7946", http: "0.0.0.0:7947", insecure: true},
		{bind: "127.0.0.1:7946", http: ""},
	} {
		cfg := DefaultConfig()
		cfg.Bind, cfg.Advertise, cfg.HTTP, cfg.SecretKeyFile, cfg.Insecure = c.bind, c.advertise, c.http, c.key, c.insecure
		err := cfg.CheckExposure()
		if len(c.wantErr) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", c, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: no error", c)
			continue
		}
		for _, w := range c.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not say %q", c, err, w)
			}
		}
	}
}

func TestBoundFlags(t *testing.T) {
	cfg, err := ParseConfig([]string{"--max-gossip-conns", "64", "--max-watchers", "5", "--http-read-timeout", "2s", "--max-http-body-memory", "16MiB", "--insecure"},
		func(k string) string {
			if k == EnvVar(FlagMaxMembers) {
				return "100"
			}
			return ""
		})
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Bounds
	if b.MaxGossipConns != 64 || b.MaxWatchers != 5 || b.HTTPReadTimeout.Seconds() != 2 || b.MaxHTTPBodyMemory != 16<<20 || b.MaxMembers != 100 || !cfg.Insecure {
		t.Fatalf("bounds %+v insecure %v", b, cfg.Insecure)
	}
	if _, err := ParseConfig([]string{"--max-watchers", "0"}, nil); err == nil || !strings.Contains(err.Error(), "--max-watchers 0") {
		t.Fatalf("--max-watchers 0: %v", err)
	}
	if _, err := ParseConfig([]string{"--max-http-body-memory", "512KiB"}, nil); err == nil || !strings.Contains(err.Error(), "at least one value") {
		t.Fatalf("body memory below one value: %v", err)
	}
}

// A keyring file left in the data directory by hearsay keys encrypts
// gossip: it satisfies the exposure check without --secret-key-file.
func TestCheckExposureKeyringFile(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Bind, cfg.HTTP, cfg.DataDir = "0.0.0.0:7946", "127.0.0.1:7947", t.TempDir()
	if err := cfg.CheckExposure(); err == nil {
		t.Fatal("no key and no keyring file: no error")
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, hearsay.KeyringFile), []byte(`["AAAAAAAAAAAAAAAAAAAAAA=="]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckExposure(); err != nil {
		t.Fatalf("with a keyring file: %v", err)
	}
}
