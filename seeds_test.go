package hearsay

import (
	"context"
	"net"
	"slices"
	"testing"
)

func TestResolveSeeds(t *testing.T) {
	got, err := resolveSeeds(context.Background(), net.DefaultResolver, []string{"10.0.0.1:7946", "localhost:7000", "10.0.0.1:7946"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "10.0.0.1:7946") || !slices.Contains(got, "127.0.0.1:7000") {
		t.Fatalf("resolved %v", got)
	}
	if len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatalf("duplicate seed kept: %v", got)
	}
	got, err = resolveSeeds(context.Background(), net.DefaultResolver, []string{"no-port", "10.0.0.2:1"})
	if err == nil || !slices.Equal(got, []string{"10.0.0.2:1"}) {
		t.Fatalf("bad seed: %v, %v", got, err)
	}
	if hasSeedNames([]string{"10.0.0.1:1", "[::1]:2"}) || !hasSeedNames([]string{"10.0.0.1:1", "hearsay.default.svc:7946"}) {
		t.Fatal("hasSeedNames")
	}
}
