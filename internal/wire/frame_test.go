package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
)

func sample() *Envelope {
	return &Envelope{
		Cluster: "c", From: "n1", FromAddr: "127.0.0.1:7946", FromId: 42,
		Members: []*Member{{Name: "n2", Address: "127.0.0.1:7948", Incarnation: 3, State: State_SUSPECT, NodeId: 7}},
		Body: &Envelope_Mail{Mail: &Mail{Id: 9, Records: []*Record{
			{Key: []byte("k"), Value: []byte("v"), Hlc: 1 << 20, Node: 42},
			{Key: []byte("gone"), Hlc: 1 << 21, Node: 42, Tombstone: true},
		}}},
	}
}

func TestRoundTrip(t *testing.T) {
	env := sample()
	b, err := Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(env, got) {
		t.Fatalf("round trip changed the envelope:\n%v\n%v", env, got)
	}
	if got.Protocol != ProtocolVersion || got.Kind() != "mail" {
		t.Fatalf("protocol %d kind %s", got.Protocol, got.Kind())
	}
	// The same frames back to back on a stream.
	var buf bytes.Buffer
	for range 3 {
		if err := WriteFrame(&buf, env); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		got, err := ReadFrame(&buf, 0)
		if err != nil || !proto.Equal(env, got) {
			t.Fatalf("stream frame: %v", err)
		}
	}
	if _, err := ReadFrame(&buf, 0); err != io.EOF {
		t.Fatalf("clean end of stream: %v, want io.EOF", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	newer := bytes.Clone(good)
	newer[2] = ProtocolVersion + 1
	newerEnv, _ := Marshal(&Envelope{Protocol: ProtocolVersion + 5, From: "x"})
	huge := bytes.Clone(good)
	huge[4], huge[5], huge[6], huge[7] = 0x7f, 0xff, 0xff, 0xff
	garbage := append(bytes.Clone(good[:HeaderSize]), 0xff, 0xff, 0xff)
	garbage[7] = 3
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short header", good[:5], ErrShort},
		{"bad magic", append([]byte("XX"), good[2:]...), ErrMagic},
		{"newer frame version", newer, ErrVersion},
		{"newer envelope version", newerEnv, ErrVersion},
		{"length over limit", huge, ErrTooLarge},
		{"truncated payload", good[:len(good)-1], ErrShort},
		{"trailing bytes", append(bytes.Clone(good), 0), ErrShort},
		{"malformed protobuf", garbage, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Unmarshal(tc.in, 0); !errors.Is(err, tc.want) {
				t.Fatalf("Unmarshal: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Unmarshal(good, 10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("small limit: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader(good[:len(good)-2]), 0); !errors.Is(err, ErrShort) {
		t.Fatalf("ReadFrame truncated: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Marshal(sample())
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte("HS\x01\x00\x00\x00\x00\x00"))
	f.Add([]byte("HS\x01\x00\x00\x00\x00\x03\xff\xff\xff"))
	ping, _ := Marshal(&Envelope{From: "a", Body: &Envelope_Ping{Ping: &Ping{Seq: 1, Target: "b"}}})
	f.Add(ping)
	keyOp, _ := Marshal(&Envelope{From: "a", Body: &Envelope_KeyOp{KeyOp: &KeyOp{Id: 7, Kind: KeyOpKind_KEY_OP_INSTALL, Key: make([]byte, 32)}}})
	f.Add(keyOp)
	keyReply, _ := Marshal(&Envelope{From: "b", Body: &Envelope_KeyOpReply{KeyOpReply: &KeyOpReply{Id: 7, KeyIds: []string{"1a2b3c4d"}}}})
	f.Add(keyReply)
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := Unmarshal(b, 1<<16)
		if err != nil {
			return
		}
		// Whatever decodes must encode again and decode to the same thing.
		again, err := Marshal(env)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		env2, err := Unmarshal(again, 1<<16)
		if err != nil || !proto.Equal(env, env2) {
			t.Fatalf("re-decode: %v", err)
		}
		_ = env.Kind()
	})
}

func FuzzReadFrame(f *testing.F) {
	good, _ := Marshal(sample())
	f.Add(append(bytes.Clone(good), good...))
	f.Add(good[:9])
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for range 10 {
			if _, err := ReadFrame(r, 1<<16); err != nil {
				return
			}
		}
	})
}

// A frame made with a shared body decodes to the same envelope as one made
// by Marshal, whatever the envelope's own fields.
func TestMarshalSharedMatchesMarshal(t *testing.T) {
	a, b := sample(), sample()
	b.Body = a.Body // the same body, in an envelope with other news
	b.From, b.Members = "n3", nil
	shared, err := EncodeBody(a)
	if err != nil {
		t.Fatal(err)
	}
	if !shared.Carries(b) || shared.Carries(sample()) {
		t.Fatal("Carries does not go by the body's identity")
	}
	for _, env := range []*Envelope{a, b} {
		want, err := Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MarshalShared(env, shared)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("shared frame %d bytes, Marshal %d", len(got), len(want))
		}
		dec, err := Unmarshal(got, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(dec, env) {
			t.Fatalf("decoded %v, want %v", dec, env)
		}
	}
	if _, err := MarshalShared(sample(), shared); err == nil {
		t.Fatal("MarshalShared took the body of another envelope")
	}
}
