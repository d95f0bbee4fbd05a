package cluster_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// keysCLI runs `hearsay keys ARGS --addr` against agent a and returns its
// output, failing the test unless it succeeds.
func keysCLI(t *testing.T, a *agent, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append(append([]string{"keys"}, args...), "--addr", a.http, "--timeout", "20s")...).CombinedOutput()
	if err != nil {
		t.Fatalf("hearsay keys %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// keyring is the part of GET /v1/keys this test reads.
type keyring struct {
	Nodes     int `json:"nodes"`
	Responses int `json:"responses"`
	Errors    int `json:"errors"`
	Keys      []struct {
		ID        string `json:"id"`
		Primary   int    `json:"primary"`
		Installed int    `json:"installed"`
	} `json:"keys"`
}

func (a *agent) keyring() (keyring, error) {
	var kr keyring
	b, code, err := a.request("GET", "/v1/keys?timeout=5s", nil)
	if err != nil {
		return kr, err
	}
	if code != 200 {
		return kr, fmt.Errorf("GET /v1/keys: %d %s", code, b)
	}
	return kr, json.Unmarshal(b, &kr)
}

// keyID returns the id `hearsay keys list` shows for the key in file.
func keyID(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command(binary, "keys", "id", file).CombinedOutput()
	if err != nil {
		t.Fatalf("keys id %s: %v\n%s", file, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestKeyRotationLosesNothing rotates the gossip key of a running 3-node
// cluster with `hearsay keys` while a writer writes through one agent:
// every acknowledged write ends up on all three, no member is declared
// dead, a node restarted afterwards comes back with the new keyring (its
// --secret-key-file still names the old key), and a member that was
// stopped during the rotation is refused with a clear join error until
// the operator copies a current member's keyring file into its data
// directory.
func TestKeyRotationLosesNothing(t *testing.T) {
	oldKey := generateKey(t)
	newKey := filepath.Join(t.TempDir(), "new.key")
	if out, err := exec.Command(binary, "keys", "generate", "--out", newKey).CombinedOutput(); err != nil {
		t.Fatalf("keys generate: %v: %s", err, out)
	}
	oldID, newID := keyID(t, oldKey), keyID(t, newKey)
	args := []string{"--secret-key-file", oldKey, "--suspicion-timeout", "3s"}
	n1 := newAgent(t, "n1")
	n1.extra = args
	n1.start()
	var nodes []*agent
	nodes = append(nodes, n1)
	for _, name := range []string{"n2", "n3", "late"} {
		a := newAgent(t, name, n1.gossip)
		a.extra = args
		a.start()
		nodes = append(nodes, a)
	}
	late := nodes[3]
	nodes = nodes[:3]
	n2, n3 := nodes[1], nodes[2]
	for _, a := range append(nodes, late) {
		a.waitFor(20*time.Second, "4 members alive", func() bool {
			alive := 0
			for _, m := range a.members() {
				if m.State == "alive" {
					alive++
				}
			}
			return alive == 4
		})
	}
	// The late member leaves and misses the rotation.
	late.stop()

	// A writer through n1 all along; a write counts once acknowledged.
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pace := time.NewTicker(5 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			k := fmt.Sprintf("w%05d", i)
			if _, code, err := n1.request("PUT", "/v1/kv/"+k, []byte(k)); err == nil && code == 200 {
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	n1.waitFor(20*time.Second, "writes before the rotation", func() bool { return count() >= 20 })

	out := keysCLI(t, n2, "install", newKey)
	if !strings.Contains(out, "install: 3 of 3 members answered") {
		t.Fatalf("keys install:\n%s", out)
	}
	atInstall := count()
	n1.waitFor(20*time.Second, "writes with two keys", func() bool { return count() >= atInstall+20 })
	if out = keysCLI(t, n2, "use", newID); !strings.Contains(out, "use: 3 of 3 members answered") || !strings.Contains(out, newID+"  3/3") {
		t.Fatalf("keys use:\n%s", out)
	}
	atUse := count()
	n1.waitFor(20*time.Second, "writes sealed with the new key", func() bool { return count() >= atUse+20 })
	if out = keysCLI(t, n2, "remove", oldID); !strings.Contains(out, "remove: 3 of 3 members answered") || strings.Contains(out, oldID) {
		t.Fatalf("keys remove:\n%s", out)
	}
	atRemove := count()
	n1.waitFor(20*time.Second, "writes with the new key alone", func() bool { return count() >= atRemove+50 })
	close(stop)
	wg.Wait()

	mu.Lock()
	all := append([]string(nil), acked...)
	mu.Unlock()
	for _, a := range nodes {
		a.waitFor(30*time.Second, "every acknowledged write", func() bool {
			for _, k := range all {
				if v, ok := a.get(k); !ok || v != k {
					return false
				}
			}
			return true
		})
	}
	t.Logf("%d writes acknowledged during the rotation (install after %d, use after %d, remove after %d), all on every node",
		len(all), atInstall, atUse, atRemove)
	for _, a := range nodes {
		for _, b := range nodes {
			if m := a.members()[b.name]; m.State != "alive" {
				t.Errorf("%s sees %s %q after the rotation", a.name, b.name, m.State)
			}
		}
		logMu <- struct{}{}
		log := a.log.String()
		<-logMu
		if strings.Contains(log, "member declared dead") || strings.Contains(log, "to=suspect") {
			t.Errorf("%s suspected or declared a member dead during the rotation", a.name)
		}
	}

	// A restart: n3 comes back with the persisted keyring, although its
	// --secret-key-file names the old key.
	n3.kill()
	if fi, err := os.Stat(filepath.Join(n3.dir, "keyring")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("n3's keyring file: %v %v, want mode 0600", fi, err)
	}
	n3.start()
	n3.waitFor(20*time.Second, "n3 back with every member alive", func() bool {
		kr, err := n3.keyring()
		return err == nil && kr.Nodes == 3 && kr.Responses == 3 && kr.Errors == 0 &&
			len(kr.Keys) == 1 && kr.Keys[0].ID == newID && kr.Keys[0].Primary == 3
	})
	n3.put("after-restart", "yes")
	n1.waitFor(20*time.Second, "a write of the restarted node", func() bool { v, ok := n1.get("after-restart"); return ok && v == "yes" })

	// The member that missed the rotation: refused, and told why.
	late.start()
	late.waitFor(20*time.Second, "a wrong-key join error", func() bool {
		var st agentStatus
		b, _, err := late.request("GET", "/v1/status", nil)
		return err == nil && json.Unmarshal(b, &st) == nil && !st.Joined && strings.Contains(st.LastJoinError, "wrong key")
	})
	if kr, err := n1.keyring(); err != nil || kr.Nodes != 3 {
		t.Fatalf("the stale member counts as a member: %+v %v", kr, err)
	}
	// The operator's fix: a current member's keyring file.
	late.stop()
	data, err := os.ReadFile(filepath.Join(n1.dir, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(late.dir, "keyring"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	late.start()
	late.waitFor(30*time.Second, "the repaired member has every write", func() bool {
		v, ok := late.get("after-restart")
		return ok && v == "yes"
	})
	n1.waitFor(20*time.Second, "4 members on the new key", func() bool {
		kr, err := n1.keyring()
		return err == nil && kr.Nodes == 4 && kr.Errors == 0 && len(kr.Keys) == 1 && kr.Keys[0].Primary == 4
	})
	// Neither the rotation nor the frames of the member that missed it
	// (refused for their key) are held against anyone.
	for _, a := range nodes {
		if q := a.quarantined(); len(q) > 0 {
			t.Errorf("%s quarantines %v after a key rotation", a.name, q)
		}
		for _, kind := range []string{"undecodable", "unauthenticated"} {
			if v := a.metric(`hearsay_offences_total{kind="` + kind + `"}`); v != 0 {
				t.Errorf("%s counted %v %s offences during a key rotation", a.name, v, kind)
			}
		}
	}
}
