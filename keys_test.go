package hearsay_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func openKeyed(t *testing.T, name, dir string, key []byte, seeds ...string) (*hearsay.Node, error) {
	t.Helper()
	cfg := hearsay.DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.BindAddr, cfg.Seeds, cfg.SecretKey = name, dir, "127.0.0.1:0", seeds, key
	cfg.Protocol.Membership.SuspicionTimeout = time.Minute
	return hearsay.Open(cfg)
}

// wantKeys checks that every one of nodes members holds exactly the keys
// ids, with ids[0] primary everywhere.
func wantKeys(t *testing.T, resp hearsay.KeyResponse, nodes int, ids ...string) {
	t.Helper()
	if resp.Nodes != nodes || resp.Responses != nodes || resp.Errors != 0 {
		t.Fatalf("response %+v: want %d nodes, all answering", resp, nodes)
	}
	if len(resp.Keys) != len(ids) {
		t.Fatalf("keys %+v, want %v", resp.Keys, ids)
	}
	for i, id := range ids {
		k := resp.Keys[i]
		primary := 0
		if i == 0 {
			primary = nodes
		}
		if k.ID != id || k.Installed != nodes || k.Primary != primary {
			t.Fatalf("key %d: %+v, want %s installed on %d, primary on %d", i, k, id, nodes, primary)
		}
	}
}

// TestKeyRotation rotates the gossip key of three nodes (two on disk, one
// in memory) while one of them writes, through another node's API:
// nothing written is lost, nobody is suspected, the disk nodes come back
// from a restart with the new keyring, and a node that kept only the old
// key is refused with a clear join error.
func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	oldK, newK := newKey(t), newKey(t)
	oldID, newID := hearsay.KeyID(oldK), hearsay.KeyID(newK)
	dir1, dir3 := t.TempDir(), t.TempDir()
	n1, err := openKeyed(t, "n1", dir1, oldK)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = n1.Close() }()
	seed := n1.Status().Address
	n2, err := openKeyed(t, "n2", "", oldK, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	n3, err := openKeyed(t, "n3", dir3, oldK, seed)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*hearsay.Node{n1, n2, n3}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "membership", func() bool { return n.Status().Alive == 3 })
	}
	resp, err := n2.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, resp, 3, oldID)

	// Refused before anything is sent.
	if _, err := n2.InstallKey(ctx, []byte("short")); !errors.Is(err, hearsay.ErrKeyRefused) {
		t.Fatalf("malformed key: %v, want ErrKeyRefused", err)
	}
	if _, err := n2.RemoveKey(ctx, oldID); !errors.Is(err, hearsay.ErrKeyRefused) || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("removing the primary key: %v, want ErrKeyRefused naming the primary key", err)
	}
	if _, err := n2.UseKey(ctx, newID); !errors.Is(err, hearsay.ErrKeyRefused) {
		t.Fatalf("using a key not installed: %v, want ErrKeyRefused", err)
	}

	// A writer on n1 all along.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var written []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("k%05d", i)
			if _, err := n1.Put(ctx, []byte(k), []byte("v")); err == nil {
				mu.Lock()
				written = append(written, k)
				mu.Unlock()
			}
		}
	}()
	if resp, err = n2.InstallKey(ctx, newK); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, resp, 3, oldID, newID)
	if resp, err = n2.UseKey(ctx, newID); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, resp, 3, newID, oldID)
	// By the base64 of the key, too.
	if resp, err = n2.RemoveKey(ctx, " "+base64.StdEncoding.EncodeToString(oldK)+"\n"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, resp, 3, newID)
	mu.Lock()
	before := len(written)
	mu.Unlock()
	// Let the writer go on under the new key alone.
	waitFor(t, 10*time.Second, "writes after the rotation", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(written) >= before+20
	})
	close(stop)
	wg.Wait()
	for _, n := range nodes {
		for _, m := range n.Members() {
			if m.State != hearsay.StateAlive {
				t.Fatalf("%s sees %s %s after the rotation", n.Status().Name, m.Name, m.State)
			}
		}
		waitFor(t, 20*time.Second, "every write everywhere", func() bool {
			for _, k := range written {
				if _, err := n.Get(ctx, []byte(k)); err != nil {
					return false
				}
			}
			return true
		})
	}
	t.Logf("%d writes during the rotation, all on every node", len(written))

	// Persisted: n3 restarts with the new keyring, though configured with
	// the old key, and rejoins.
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir3, hearsay.KeyringFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v, %v; want mode 0600", fi, err)
	}
	n3, err = openKeyed(t, "n3", dir3, oldK, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer n3.Close()
	waitFor(t, 10*time.Second, "n3 rejoined", func() bool {
		if !n3.Status().Joined {
			return false
		}
		for _, m := range n1.Members() {
			if m.Name == "n3" {
				return m.State == hearsay.StateAlive && m.Address == n3.Status().Address
			}
		}
		return false
	})
	if resp, err = n1.Keys(ctx); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, resp, 3, newID)
	// A value too large for a datagram reaches the restarted node over a
	// connection opened after the rotation.
	big := make([]byte, 64<<10)
	if _, err := n1.Put(ctx, []byte("big"), big); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a large value on the restarted node", func() bool {
		e, err := n3.Get(ctx, []byte("big"))
		return err == nil && len(e.Value) == len(big)
	})

	// A node with only the old key is refused, and says why.
	stale, err := openKeyed(t, "stale", "", oldK, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	waitFor(t, 10*time.Second, "a join error", func() bool { return strings.Contains(stale.Status().LastJoinError, "wrong key") })
	t.Logf("stale node: %s", stale.Status().LastJoinError)
}

// A node whose keyring file is corrupt refuses to start and names it.
func TestCorruptKeyringFile(t *testing.T) {
	dir := t.TempDir()
	n, err := openKeyed(t, "n1", dir, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.InstallKey(context.Background(), newKey(t)); err != nil {
		t.Fatal(err)
	}
	n.Close()
	path := filepath.Join(dir, hearsay.KeyringFile)
	if err := os.WriteFile(path, []byte(`["not a key"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = openKeyed(t, "n1", dir, newKey(t))
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("open with a corrupt keyring file: %v, want an error naming %s and the fix", err, path)
	}
}

// Without a secret key there is no keyring to change.
func TestKeysWithoutEncryption(t *testing.T) {
	n := openNode(t, "n1", "")
	if _, err := n.Keys(context.Background()); !errors.Is(err, hearsay.ErrNoKeyring) {
		t.Fatalf("Keys without a key: %v, want ErrNoKeyring", err)
	}
	if _, err := n.InstallKey(context.Background(), make([]byte, 32)); !errors.Is(err, hearsay.ErrNoKeyring) {
		t.Fatalf("InstallKey without a key: %v, want ErrNoKeyring", err)
	}
}

// A member that does not answer (gone without a leave, still alive in the
// view) is reported, and the operation says it is incomplete; it was
// applied where it could be.
func TestKeyOpReportsSilentMember(t *testing.T) {
	k := newKey(t)
	n1, err := openKeyed(t, "n1", "", k)
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	n2, err := openKeyed(t, "n2", "", k, n1.Status().Address)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "membership", func() bool { return n1.Status().Alive == 2 && n2.Status().Alive == 2 })
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	newK := newKey(t)
	resp, err := n1.InstallKey(ctx, newK)
	if !errors.Is(err, hearsay.ErrKeyOpIncomplete) || !strings.Contains(err.Error(), "n2: no answer") {
		t.Fatalf("install with a silent member: %v, want ErrKeyOpIncomplete naming n2", err)
	}
	if resp.Nodes != 2 || resp.Responses != 1 || resp.Errors != 1 {
		t.Fatalf("response %+v: want 2 nodes, 1 response, 1 error", resp)
	}
	for _, m := range resp.Members {
		if m.Name == "n1" && (m.Error != "" || len(m.Keys) != 2 || m.Keys[1] != hearsay.KeyID(newK)) {
			t.Fatalf("n1's answer %+v: want the new key installed", m)
		}
	}
}
