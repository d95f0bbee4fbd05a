package transport

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/hearsaydb/hearsay/internal/wire"
)

func key(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestParseKey(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		k := key(byte(n), n)
		for _, s := range []string{
			base64.StdEncoding.EncodeToString(k),
			base64.RawStdEncoding.EncodeToString(k),
			" " + base64.StdEncoding.EncodeToString(k) + "\n",
		} {
			got, err := ParseKey(s)
			if err != nil || !bytes.Equal(got, k) {
				t.Errorf("ParseKey(%q) = %x, %v", s, got, err)
			}
		}
	}
	for _, s := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(key(1, 15)), base64.StdEncoding.EncodeToString(key(1, 33))} {
		if _, err := ParseKey(s); !errors.Is(err, ErrKey) {
			t.Errorf("ParseKey(%q) error %v, want ErrKey", s, err)
		}
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	if _, err := NewKeyring(key(1, 15)); !errors.Is(err, ErrKey) {
		t.Errorf("15-byte primary: %v", err)
	}
	if _, err := NewKeyring(key(1, 16), key(2, 7)); !errors.Is(err, ErrKey) {
		t.Errorf("7-byte secondary: %v", err)
	}
	if _, err := NewKeyring(nil); !errors.Is(err, ErrKey) {
		t.Errorf("nil primary: %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	kr, err := NewKeyring(key(1, 32))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := wire.Marshal(ping(1))
	sealed, err := kr.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(plain)+SealOverhead {
		t.Errorf("sealed %d bytes, plain %d, overhead %d", len(sealed), len(plain), SealOverhead)
	}
	if bytes.Contains(sealed, plain[wire.HeaderSize:]) {
		t.Error("payload visible in the sealed frame")
	}
	got, err := kr.Open(sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %x, %v", got, err)
	}
	again, _ := kr.Seal(plain)
	if bytes.Equal(again, sealed) {
		t.Error("two seals of the same frame are identical: nonce reused")
	}
	// Every single-bit change, in the header or elsewhere, is caught.
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x10
		if _, err := kr.Open(bad); err == nil {
			t.Fatalf("Open accepted a frame with byte %d changed", i)
		}
	}
	if _, err := kr.Open(plain); !errors.Is(err, ErrAuth) {
		t.Errorf("Open(plain) = %v, want ErrAuth", err)
	}
}

func TestKeyringRotation(t *testing.T) {
	oldK, newK := key(1, 16), key(2, 32)
	kr, err := NewKeyring(oldK)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := wire.Marshal(ping(1))
	byOld, _ := kr.Seal(plain)
	if err := kr.AddKey(newK); err != nil {
		t.Fatal(err)
	}
	if err := kr.UseKey(newK); err != nil {
		t.Fatal(err)
	}
	byNew, _ := kr.Seal(plain)
	onlyNew, _ := NewKeyring(newK)
	if _, err := onlyNew.Open(byNew); err != nil {
		t.Errorf("new primary not used: %v", err)
	}
	if _, err := kr.Open(byOld); err != nil {
		t.Errorf("old key no longer accepted: %v", err)
	}
	if err := kr.RemoveKey(newK); !errors.Is(err, ErrKey) {
		t.Errorf("removing the primary: %v", err)
	}
	if err := kr.RemoveKey(oldK); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Open(byOld); !errors.Is(err, ErrAuth) {
		t.Errorf("removed key still accepted: %v", err)
	}
	if ks := kr.Keys(); len(ks) != 1 || !bytes.Equal(ks[0], newK) {
		t.Errorf("Keys = %x", ks)
	}
	if err := kr.UseKey(oldK); !errors.Is(err, ErrKey) {
		t.Errorf("UseKey of an absent key: %v", err)
	}
	if err := kr.AddKey(key(3, 5)); !errors.Is(err, ErrKey) {
		t.Errorf("AddKey of a bad key: %v", err)
	}
}

func mustKeyring(t *testing.T, primary []byte, others ...[]byte) *Keyring {
	t.Helper()
	kr, err := NewKeyring(primary, others...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestEncryptedTransport(t *testing.T) {
	k1, k2 := key(1, 32), key(2, 16)

	t.Run("same key", func(t *testing.T) {
		a := newTransport(t, Config{Keyring: mustKeyring(t, k1)})
		b := newTransport(t, Config{Keyring: mustKeyring(t, k1)})
		n := mustSend(t)(a.Send(b.LocalAddr(), ping(1)))
		in := recv(t, b)
		if in.Env.GetPing().GetSeq() != 1 || in.Size != n {
			t.Fatalf("got %v size %d, sent %d", in.Env, in.Size, n)
		}
		big := mail(2, 200<<10)
		mustSend(t)(a.Send(b.LocalAddr(), big))
		if in := recv(t, b); !equalValue(in.Env, big) {
			t.Fatal("large encrypted frame corrupted")
		}
		if s := b.Stats(); s.AuthErrors != 0 || s.PacketsReceived != 1 || s.StreamFramesReceived != 1 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		a := newTransport(t, Config{Keyring: mustKeyring(t, k2)})
		b := newTransport(t, Config{Keyring: mustKeyring(t, k1)})
		mustSend(t)(a.Send(b.LocalAddr(), ping(1)))
		mustSend(t)(a.Send(b.LocalAddr(), mail(2, 50<<10)))
		waitFor(t, "auth errors", func() bool { return b.Stats().AuthErrors == 2 })
		good := newTransport(t, Config{Keyring: mustKeyring(t, k1)})
		mustSend(t)(good.Send(b.LocalAddr(), ping(3)))
		expectOnlyMarker(t, b, 3)
	})

	t.Run("plaintext refused", func(t *testing.T) {
		plain := newTransport(t, Config{})
		b := newTransport(t, Config{Keyring: mustKeyring(t, k1)})
		mustSend(t)(plain.Send(b.LocalAddr(), ping(1)))
		mustSend(t)(plain.Send(b.LocalAddr(), mail(2, 50<<10)))
		waitFor(t, "plaintext refused", func() bool { return b.Stats().AuthErrors == 2 })
		// And the other way round.
		enc := newTransport(t, Config{Keyring: mustKeyring(t, k1)})
		mustSend(t)(enc.Send(plain.LocalAddr(), ping(1)))
		waitFor(t, "sealed frame refused", func() bool { return plain.Stats().AuthErrors == 1 })
		if s := b.Stats(); s.PacketsReceived+s.StreamFramesReceived != 0 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		// The sender already uses the new key; the receiver has both.
		a := newTransport(t, Config{Keyring: mustKeyring(t, k2)})
		b := newTransport(t, Config{Keyring: mustKeyring(t, k1, k2)})
		old := newTransport(t, Config{Keyring: mustKeyring(t, k1)})
		mustSend(t)(a.Send(b.LocalAddr(), ping(1)))
		if in := recv(t, b); in.Env.GetPing().GetSeq() != 1 {
			t.Fatalf("got %v", in.Env)
		}
		mustSend(t)(old.Send(b.LocalAddr(), ping(2)))
		if in := recv(t, b); in.Env.GetPing().GetSeq() != 2 {
			t.Fatalf("got %v", in.Env)
		}
		// b sends with its primary, the old key, which a lacks: refused.
		mustSend(t)(b.Send(a.LocalAddr(), ping(3)))
		waitFor(t, "old key refused", func() bool { return a.Stats().AuthErrors == 1 })
		if s := b.Stats(); s.AuthErrors != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func FuzzOpen(f *testing.F) {
	kr, err := NewKeyring(key(1, 16), key(2, 32))
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := wire.Marshal(ping(1))
	sealed, _ := kr.Seal(plain)
	f.Add(sealed)
	f.Add(plain)
	f.Add([]byte{})
	f.Add([]byte("HS"))
	f.Add(sealed[:wire.HeaderSize])
	f.Add(sealed[:wire.HeaderSize+sealedBodyOverhead-1])
	f.Add(append(bytes.Clone(sealed[:wire.HeaderSize]), 2))
	f.Add([]byte("HS\x01\x01\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := kr.Open(data)
		if err != nil {
			if got != nil {
				t.Fatalf("Open returned data with error %v", err)
			}
			return
		}
		// Only genuine sealed frames open; what comes out round-trips.
		resealed, err := kr.Seal(got)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := kr.Open(resealed); err != nil || !bytes.Equal(again, got) {
			t.Fatalf("round trip: %v", err)
		}
		// And the transport's decode path copes with it too.
		tr := &Transport{cfg: Config{Keyring: kr, MaxFrame: wire.DefaultMaxFrame}}
		tr.decode(data)
	})
}
