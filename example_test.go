package hearsay_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/hearsaydb/hearsay"
)

// A node embedded in a program: open it, write, read, close. Give it Seeds
// to join an existing cluster.
func Example() {
	dir, err := os.MkdirTemp("", "hearsay-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := hearsay.DefaultConfig()
	cfg.Name = "example"
	cfg.DataDir = dir
	cfg.BindAddr = "127.0.0.1:0"
	// cfg.Seeds = []string{"10.0.0.1:7946"} to join a cluster.
	node, err := hearsay.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	ctx := context.Background()
	if _, err := node.Put(ctx, []byte("greeting"), []byte("hello")); err != nil {
		log.Fatal(err)
	}
	e, err := node.Get(ctx, []byte("greeting"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(e.Value))
	// Output: hello
}

// How far a write has spread: every live member says which version of the
// key it holds and how it arrived. Alone, a node holds its own write.
func ExampleNode_Spread() {
	cfg := hearsay.DefaultConfig()
	cfg.Name = "spread-example"
	cfg.BindAddr = "127.0.0.1:0" // DataDir "": in memory
	node, err := hearsay.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	ctx := context.Background()
	v, err := node.Put(ctx, []byte("greeting"), []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	rep, err := node.Spread(ctx, [][]byte{[]byte("greeting")})
	if err != nil {
		log.Fatal(err)
	}
	k := rep.Keys[0]
	fmt.Printf("%d/%d members hold it; %s got it by %s\n", k.Holds(v), rep.Asked, k.Holders[0].Member, k.Holders[0].Via)
	// Output: 1/1 members hold it; spread-example got it by local
}
