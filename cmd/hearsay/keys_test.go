package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/agent"
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
	if e := cli(t, nil, "", "keys", "check", bad).want(t, exitError).stderr; !strings.Contains(e, "want 16, 24 or 32") {
		t.Fatalf("bad key error %q", e)
	}
	cli(t, nil, "", "keys", "check").want(t, 2)
	cli(t, nil, "", "keys", "check", filepath.Join(dir, "absent")).want(t, exitError)
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
	cli(t, nil, "", "keys", "generate", "--out", path).want(t, exitError)
	cli(t, nil, "", "keys", "generate", "--out", path, "--keep-existing").want(t, 0)
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("key file changed")
	}
}

// keys list, install, use and remove against two agents sharing a key,
// through one of them.
func TestKeysRotateCLI(t *testing.T) {
	dir := t.TempDir()
	oldFile, newFile := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	cli(t, nil, "", "keys", "generate", "--out", oldFile).want(t, 0)
	cli(t, nil, "", "keys", "generate", "--out", newFile).want(t, 0)
	id := func(file string) string {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		return hearsay.KeyID(k)
	}
	oldID, newID := id(oldFile), id(newFile)
	if got := strings.TrimSpace(cli(t, nil, "", "keys", "id", oldFile).want(t, 0).stdout); got != oldID {
		t.Fatalf("keys id: %q, want %q", got, oldID)
	}
	a1 := startAgent(t, "k1", "--secret-key-file", oldFile)
	startAgent(t, "k2", "--secret-key-file", oldFile, "--join", a1.gossip)
	run := func(args ...string) result {
		t.Helper()
		return cli(t, nil, "", append(args, "--addr", a1.addr)...)
	}
	waitUntil(t, "both members alive", func() bool {
		r := run("members")
		return r.code == 0 && strings.Count(r.stdout, "alive") == 2
	})

	out := run("keys", "list").want(t, 0).stdout
	if !strings.Contains(out, oldID) || !strings.Contains(out, "2/2") || !strings.Contains(out, "2 of 2 members answered") {
		t.Fatalf("keys list:\n%s", out)
	}
	if e := run("keys", "install", filepath.Join(dir, "absent")).want(t, exitError).stderr; !strings.Contains(e, "absent") {
		t.Fatalf("install of a missing file: %s", e)
	}
	if e := run("keys", "remove", oldID).want(t, exitError).stderr; !strings.Contains(e, "primary key") {
		t.Fatalf("removing the primary key: %s", e)
	}
	run("keys", "install", newFile).want(t, 0)
	run("keys", "use", newID).want(t, 0)
	run("keys", "remove", oldID).want(t, 0)
	var kr agent.KeysResponse
	if err := json.Unmarshal([]byte(run("keys", "list", "--json").want(t, 0).stdout), &kr); err != nil {
		t.Fatal(err)
	}
	if kr.Nodes != 2 || kr.Errors != 0 || len(kr.Keys) != 1 || kr.Keys[0].ID != newID || kr.Keys[0].Primary != 2 || kr.Keys[0].Installed != 2 {
		t.Fatalf("keys list --json after the rotation: %+v", kr)
	}
	// generate takes no client flag.
	cli(t, nil, "", "keys", "generate", "--addr", a1.addr).want(t, 2)
}

// waitUntil polls cond until it holds, with a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
