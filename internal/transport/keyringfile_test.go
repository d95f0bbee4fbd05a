package transport

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyID(t *testing.T) {
	a, b := KeyID(key(1, 32)), KeyID(key(2, 32))
	if len(a) != 8 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("KeyID %q: want 8 lowercase hex digits", a)
	}
	if a == b || a != KeyID(key(1, 32)) {
		t.Fatalf("KeyID not stable or not distinct: %q %q", a, b)
	}
}

func TestKeyringCap(t *testing.T) {
	kr, err := NewKeyring(key(0, 16))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < MaxKeys; i++ {
		if err := kr.AddKey(key(byte(i), 16)); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
	if err := kr.AddKey(key(0xff, 16)); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("key beyond MaxKeys: %v, want a full-keyring error", err)
	}
	if err := kr.AddKey(key(3, 16)); err != nil {
		t.Fatalf("adding a present key to a full ring: %v", err)
	}
	many := make([][]byte, MaxKeys+1)
	for i := range many {
		many[i] = key(byte(i), 16)
	}
	if _, err := NewKeyring(many[0], many[1:]...); !errors.Is(err, ErrKey) {
		t.Fatalf("NewKeyring with %d keys: %v", len(many), err)
	}
	if err := kr.SetKeys(many); !errors.Is(err, ErrKey) {
		t.Fatalf("SetKeys with %d keys: %v", len(many), err)
	}
	if err := kr.SetKeys(nil); !errors.Is(err, ErrKey) {
		t.Fatalf("SetKeys with no key: %v", err)
	}
	if len(kr.IDs()) != MaxKeys {
		t.Fatalf("a refused SetKeys changed the ring: %d keys", len(kr.IDs()))
	}
	if err := kr.SetKeys([][]byte{key(9, 32), key(8, 16)}); err != nil {
		t.Fatal(err)
	}
	if ids := kr.IDs(); len(ids) != 2 || ids[0] != KeyID(key(9, 32)) || ids[1] != KeyID(key(8, 16)) {
		t.Fatalf("IDs after SetKeys: %v", ids)
	}
}

// After SetKeys, frames seal with the new primary and open with any key.
func TestSetKeysSealsWithNewPrimary(t *testing.T) {
	oldK, newK := key(1, 32), key(2, 32)
	kr, _ := NewKeyring(oldK)
	onlyOld, _ := NewKeyring(oldK)
	onlyNew, _ := NewKeyring(newK)
	frame := []byte("HS\x01\x00\x00\x00\x00\x00")
	if err := kr.SetKeys([][]byte{newK, oldK}); err != nil {
		t.Fatal(err)
	}
	sealed, err := kr.Seal(frame)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onlyNew.Open(sealed); err != nil {
		t.Fatalf("a ring with only the new key cannot open: %v", err)
	}
	if _, err := onlyOld.Open(sealed); !errors.Is(err, ErrAuth) {
		t.Fatalf("a ring with only the old key opened a frame sealed with the new primary: %v", err)
	}
	old, _ := onlyOld.Seal(frame)
	if _, err := kr.Open(old); err != nil {
		t.Fatalf("the old key, now secondary, no longer opens: %v", err)
	}
}

func TestKeyringFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	keys := [][]byte{key(1, 32), key(2, 16), key(3, 24)}
	if err := WriteKeyringFile(path, keys); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := ReadKeyringFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("read %d keys, wrote %d", len(got), len(keys))
	}
	for i := range keys {
		if !bytes.Equal(got[i], keys[i]) {
			t.Fatalf("key %d differs", i)
		}
	}
	// Overwritten atomically: no temporary file is left behind.
	if err := WriteKeyringFile(path, keys[1:]); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after two writes, want 1", len(entries))
	}
	if got, _ := ReadKeyringFile(path); len(got) != 2 || !bytes.Equal(got[0], keys[1]) {
		t.Fatalf("after rewrite: %d keys", len(got))
	}
	if err := WriteKeyringFile(path, nil); err == nil {
		t.Fatal("an empty keyring was written")
	}
	if _, err := ReadKeyringFile(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestKeyringFileCorrupt(t *testing.T) {
	good := string(EncodeKeyringFile([][]byte{key(1, 32)}))
	for name, data := range map[string]string{
		"empty":       "",
		"not json":    "hello",
		"truncated":   good[:len(good)/2],
		"object":      `{"primary": "x"}`,
		"no key":      `[]`,
		"not base64":  `["%%%"]`,
		"short key":   `["c2hvcnQ="]`,
		"repeated":    "[" + strings.TrimSpace(good)[1:len(strings.TrimSpace(good))-1] + "," + strings.TrimSpace(good)[1:],
		"trailing":    strings.TrimSpace(good) + `["x"]`,
		"too many":    "[" + strings.Repeat(`"AAAAAAAAAAAAAAAAAAAAAA==",`, MaxKeys) + `"AQEBAQEBAQEBAQEBAQEBAQ=="]`,
		"huge":        strings.Repeat(" ", maxKeyringFile+1),
		"numbers":     `[1, 2]`,
		"nested":      `[["a"]]`,
		"null":        `null`,
		"string only": `"AAAAAAAAAAAAAAAAAAAAAA=="`,
	} {
		path := filepath.Join(t.TempDir(), "keyring")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyringFile(path)
		if !errors.Is(err, ErrKeyringFile) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want ErrKeyringFile naming %s", name, err, path)
		}
	}
}

func FuzzKeyringFile(f *testing.F) {
	f.Add(EncodeKeyringFile([][]byte{key(1, 32), key(2, 16)}))
	f.Add([]byte(`[]`))
	f.Add([]byte(`["AAAA"]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[` + strings.Repeat(`"",`, 20) + `""]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := DecodeKeyringFile(data)
		if err != nil {
			if keys != nil || !errors.Is(err, ErrKeyringFile) {
				t.Fatalf("keys %d with error %v", len(keys), err)
			}
			return
		}
		// What decodes makes a ring, and encodes back to the same keys.
		if _, err := NewKeyring(keys[0], keys[1:]...); err != nil {
			t.Fatalf("decoded keys make no ring: %v", err)
		}
		again, err := DecodeKeyringFile(EncodeKeyringFile(keys))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("re-encoded keyring: %d keys, %v", len(again), err)
		}
		for i := range keys {
			if !bytes.Equal(again[i], keys[i]) {
				t.Fatalf("key %d changed in a round trip", i)
			}
		}
	})
}

// A connection dialed after a rotation opens with a hello sealed by the
// new primary key: the hello is not sealed once for the transport's life.
func TestConnectionAfterRotation(t *testing.T) {
	oldK, newK := key(1, 32), key(2, 32)
	ra, rb := mustKeyring(t, oldK), mustKeyring(t, oldK)
	a := newTransport(t, Config{Keyring: ra, MaxFrame: 1 << 20})
	b := newTransport(t, Config{Keyring: rb, MaxFrame: 1 << 20})
	for _, r := range []*Keyring{ra, rb} {
		if err := r.SetKeys([][]byte{newK}); err != nil {
			t.Fatal(err)
		}
	}
	// Larger than PreAuthMaxFrame: delivered only on an authenticated
	// connection.
	mustSend(t)(a.SendTCP(b.LocalAddr(), mail(1, 64<<10)))
	in := recv(t, b)
	if in.Env.GetMail().GetId() != 1 {
		t.Fatalf("received %v, want mail 1", in.Env)
	}
	if s := b.Stats(); s.AuthErrors != 0 {
		t.Fatalf("receiver refused %d frames after the rotation", s.AuthErrors)
	}
}
