package hearsay_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"

	"github.com/hearsaydb/hearsay"
)

// Rotating the gossip key of a running cluster: install the new key on
// every member, make it the primary key everywhere, then remove the old
// one. Each call reaches every live member; here the cluster is one node.
func ExampleNode_InstallKey() {
	dir, err := os.MkdirTemp("", "hearsay-keys-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(oldKey)
	_, _ = rand.Read(newKey)
	cfg := hearsay.DefaultConfig()
	cfg.Name = "example"
	cfg.DataDir = dir // the keyring persists here, in the file "keyring"
	cfg.BindAddr = "127.0.0.1:0"
	cfg.SecretKey = oldKey
	node, err := hearsay.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	ctx := context.Background()
	if _, err := node.InstallKey(ctx, newKey); err != nil {
		log.Fatal(err)
	}
	if _, err := node.UseKey(ctx, hearsay.KeyID(newKey)); err != nil {
		log.Fatal(err)
	}
	if _, err := node.RemoveKey(ctx, hearsay.KeyID(oldKey)); err != nil {
		log.Fatal(err)
	}
	resp, err := node.Keys(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range resp.Keys {
		fmt.Println(k.ID == hearsay.KeyID(newKey), k.Primary, "of", resp.Nodes, "members use it")
	}
	// Output: true 1 of 1 members use it
}
