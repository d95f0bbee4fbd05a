package hearsay_test

import (
	"context"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
)

// TestSpreadFollowsAWrite writes on one node of three and asks another how
// far the write has spread: every member holds it, the writer by its
// client, the others by direct mail.
func TestSpreadFollowsAWrite(t *testing.T) {
	ctx := context.Background()
	n1 := openNode(t, "n1", "")
	n2 := openNode(t, "n2", "", n1.Status().Address)
	n3 := openNode(t, "n3", "", n1.Status().Address)
	for _, n := range []*hearsay.Node{n1, n2, n3} {
		waitFor(t, 10*time.Second, "membership", func() bool { return n.Status().Alive == 3 })
	}
	v, err := n1.Put(ctx, []byte("k"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	var rep hearsay.SpreadReport
	waitFor(t, 10*time.Second, "the write on every member", func() bool {
		rep, err = n2.Spread(ctx, [][]byte{[]byte("k"), []byte("absent")})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Keys[0].Holds(v) == 3
	})
	if rep.Asked != 3 || rep.Answered != 3 {
		t.Fatalf("asked %d, answered %d; want 3 and 3", rep.Asked, rep.Answered)
	}
	for _, h := range rep.Keys[0].Holders {
		want := hearsay.ViaDirectMail
		if h.Member == "n1" {
			want = hearsay.ViaLocal
		}
		if h.Via != want || h.Version != v {
			t.Errorf("%s: %+v, want version %v via %s", h.Member, h, v, want)
		}
	}
	if got := rep.Keys[1].Holds(hearsay.Version{}); got != 0 {
		t.Errorf("%d members claim the absent key", got)
	}
	if _, err := n2.Spread(ctx, nil); err == nil {
		t.Error("a spread of no keys was accepted")
	}
}

// TestSpreadAfterAPeerLeft asks a node whose only peer has left: the call
// does not wait for it, and reports this node's own answer.
func TestSpreadAfterAPeerLeft(t *testing.T) {
	n1 := openNode(t, "n1", "")
	n2 := openNode(t, "n2", "", n1.Status().Address)
	waitFor(t, 10*time.Second, "membership", func() bool { return n1.Status().Alive == 2 })
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rep, err := n1.Spread(ctx, [][]byte{[]byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != 1 || rep.Asked > 2 {
		t.Fatalf("asked %d, answered %d: want only this node's own answer", rep.Asked, rep.Answered)
	}
}
