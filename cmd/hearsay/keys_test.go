package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysGenerateAndCheck(t *testing.T) {
	r := cli(t, nil, "", "keys", "generate").want(t, 0)
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.stdout))
	if err != nil || len(k) != 32 {
		t.Fatalf("generated key %q: %d bytes, %v", r.stdout, len(k), err)
	}
	if r2 := cli(t, nil, "", "keys", "generate"); r2.stdout == r.stdout {
		t.Fatal("two generated keys are equal")
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := cli(t, nil, "", "keys", "check", good).want(t, 0).stdout; !strings.Contains(out, "256-bit") {
		t.Fatalf("check output %q", out)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e := cli(t, nil, "", "keys", "check", bad).want(t, 1).stderr; !strings.Contains(e, "want 16, 24 or 32") {
		t.Fatalf("bad key error %q", e)
	}
	cli(t, nil, "", "keys", "check").want(t, 2)
	cli(t, nil, "", "keys", "check", filepath.Join(dir, "absent")).want(t, 1)
}

func TestKeysGenerateOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	cli(t, nil, "", "keys", "generate", "--out", path).want(t, 0)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	first, _ := os.ReadFile(path)
	cli(t, nil, "", "keys", "check", path).want(t, 0)
	// Never overwritten; --keep-existing succeeds and keeps it.
	cli(t, nil, "", "keys", "generate", "--out", path).want(t, 1)
	cli(t, nil, "", "keys", "generate", "--out", path, "--keep-existing").want(t, 0)
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("key file changed")
	}
}
