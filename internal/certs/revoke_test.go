package certs

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRevocation(t *testing.T) {
	dir := newCluster(t)
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadCAKey(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 12, 0, 0, 123, time.UTC)
	r, err := NewRevocation("n3", at, key)
	if err != nil {
		t.Fatal(err)
	}
	enc := r.Marshal()
	got, err := ParseRevocation(enc, ca)
	if err != nil || got.Name != "n3" || !got.At.Equal(at) {
		t.Fatalf("ParseRevocation = %+v, %v", got, err)
	}
	if !bytes.Equal(got.Marshal(), enc) {
		t.Fatal("encoding does not round-trip")
	}
	// Any change breaks the signature or the encoding.
	for i := range enc {
		bad := bytes.Clone(enc)
		bad[i] ^= 0x20
		if _, err := ParseRevocation(bad, ca); !errors.Is(err, ErrRevocation) {
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	// Another CA's revocation.
	other := newCluster(t)
	otherKey, _ := LoadCAKey(other, "")
	forged, _ := NewRevocation("n3", at, otherKey)
	if _, err := ParseRevocation(forged.Marshal(), ca); err == nil || !strings.Contains(err.Error(), "not signed by this cluster's CA") {
		t.Fatalf("forged: %v", err)
	}
	if _, err := NewRevocation("bad name", at, key); err == nil {
		t.Fatal("bad name accepted")
	}

	// The list keeps the earliest time per name, within its bound.
	l := NewRevocationList(2)
	later, _ := NewRevocation("n3", at.Add(time.Hour), key)
	if !l.Add(later) || !l.Add(r) || l.Add(later) {
		t.Fatal("Add: want the earlier time to replace the later")
	}
	if got, ok := l.Revoked("n3"); !ok || !got.Equal(at) {
		t.Fatalf("Revoked(n3) = %v %v", got, ok)
	}
	r4, _ := NewRevocation("n4", at, key)
	r5, _ := NewRevocation("n5", at, key)
	if !l.Add(r4) || l.Add(r5) || l.Len() != 2 || l.Dropped() != 1 {
		t.Fatalf("bound: len %d dropped %d", l.Len(), l.Dropped())
	}
	if _, ok := l.Revoked("n5"); ok {
		t.Fatal("n5 revoked beyond the bound")
	}
	var nilList *RevocationList
	if _, ok := nilList.Revoked("n3"); ok {
		t.Fatal("nil list revokes")
	}

	// Kept in the certs directory for cert list.
	if err := AppendRevocation(dir, r); err != nil {
		t.Fatal(err)
	}
	if err := AppendRevocation(dir, r4); err != nil {
		t.Fatal(err)
	}
	revs, err := ReadRevocations(dir)
	if err != nil || len(revs) != 2 || revs[0].Name != "n3" || revs[1].Name != "n4" {
		t.Fatalf("ReadRevocations = %+v, %v", revs, err)
	}
	if revs, err := ReadRevocations(filepath.Join(dir, "none")); err != nil || revs != nil {
		t.Fatalf("no file: %v %v", revs, err)
	}
}

// FuzzRevocation: the decoder refuses what is not a canonical encoding,
// never panics, and what it accepts encodes back to the same bytes.
func FuzzRevocation(f *testing.F) {
	dir := newCluster(f)
	key, err := LoadCAKey(dir, "")
	if err != nil {
		f.Fatal(err)
	}
	ca, _ := LoadCA(dir)
	r, _ := NewRevocation("n3", time.Unix(1700000000, 5), key)
	f.Add(r.Marshal())
	f.Add([]byte("HSRV"))
	f.Add([]byte{})
	f.Add(append([]byte("HSRV\x01\x40"), make([]byte, 200)...))
	c, _ := NewClientRevocation("ci-bot", time.Unix(1700000000, 5), key)
	f.Add(c.Marshal())
	f.Add(append([]byte("HSRC\x01\x06ci-bot"), make([]byte, 72)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := UnmarshalRevocation(data)
		if err != nil {
			return
		}
		if !bytes.Equal(got.Marshal(), data) {
			t.Fatalf("accepted %x, encodes to %x", data, got.Marshal())
		}
		if got.Client != (string(data[:4]) == "HSRC") {
			t.Fatalf("magic %q decoded as client %v", data[:4], got.Client)
		}
		if got.Verify(ca) == nil {
			// Only the CA signs: the seeds' two, unchanged.
			if !bytes.Equal(data, r.Marshal()) && !bytes.Equal(data, c.Marshal()) {
				t.Fatalf("a revocation the CA never signed verifies: %x", data)
			}
		}
	})
}

// TestClientRevocation: a client revocation decodes as one, verifies
// against its CA, and cannot be turned into a node's revocation of the
// same name (or back) by changing its magic: the signature covers it.
func TestClientRevocation(t *testing.T) {
	dir := newCluster(t)
	key, err := LoadCAKey(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := LoadCA(dir)
	c, err := NewClientRevocation("ci-bot", time.Now(), key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseRevocation(c.Marshal(), ca)
	if err != nil || !got.Client || got.Name != "ci-bot" || !got.At.Equal(c.At) {
		t.Fatalf("ParseRevocation: %+v, %v", got, err)
	}
	b := c.Marshal()
	copy(b, "HSRV")
	if r, err := ParseRevocation(b, ca); err == nil {
		t.Fatalf("a client revocation turned into a node's verifies: %+v", r)
	}
	n, _ := NewRevocation("ci-bot", time.Now(), key)
	b = n.Marshal()
	copy(b, "HSRC")
	if r, err := ParseRevocation(b, ca); err == nil {
		t.Fatalf("a node revocation turned into a client's verifies: %+v", r)
	}
	if _, err := NewClientRevocation("bad name", time.Now(), key); err == nil || !strings.Contains(err.Error(), "client name") {
		t.Fatalf("bad client name: %v", err)
	}
}
