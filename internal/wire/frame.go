// Package wire defines hearsay's messages between nodes and their framing.
//
// A frame is a fixed 8-byte header followed by a protobuf-encoded Envelope:
//
//	magic "HS" (2) | protocol version (1) | flags (1) | payload length (4, big endian)
//
// The same frame travels as one UDP datagram or as one unit of a TCP stream.
// Decoding never trusts the peer: the magic, the version, the length limit
// and the protobuf encoding are all checked, and every failure is an error
// that names what was wrong, never a panic.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// ProtocolVersion is the version this build speaks. A frame from a newer
// version is refused with ErrVersion.
const ProtocolVersion = 1

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 8

// DefaultMaxFrame is the largest payload accepted by default: room for one
// maximum-size value (1 MiB) with its key and envelope, many times over.
const DefaultMaxFrame = 8 << 20

var magic = [2]byte{'H', 'S'}

// Errors returned by decoding. They are wrapped with detail; test with errors.Is.
var (
	ErrMagic     = errors.New("wire: not a hearsay frame")
	ErrVersion   = errors.New("wire: unsupported protocol version")
	ErrTooLarge  = errors.New("wire: frame exceeds size limit")
	ErrShort     = errors.New("wire: truncated frame")
	ErrMalformed = errors.New("wire: malformed message")
)

// Marshal encodes env into a complete frame.
func Marshal(env *Envelope) ([]byte, error) {
	if env.Protocol == 0 {
		env.Protocol = ProtocolVersion
	}
	size := proto.Size(env)
	buf := make([]byte, HeaderSize, HeaderSize+size)
	putHeader(buf, size)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, env)
	if err != nil {
		return nil, fmt.Errorf("wire: encode envelope: %w", err)
	}
	return buf, nil
}

// SharedBody is the encoding of one envelope body, made once by EncodeBody
// and reused by MarshalShared for every envelope that carries the same body
// (the same pointer): direct mail sends one body to every peer, each in an
// envelope of its own (its piggybacked membership news differ). A body must
// not change once encoded.
type SharedBody struct {
	body isEnvelope_Body
	enc  []byte // the body field alone, tag included
}

// EncodeBody encodes env's body alone.
func EncodeBody(env *Envelope) (SharedBody, error) {
	enc, err := proto.Marshal(&Envelope{Body: env.Body})
	if err != nil {
		return SharedBody{}, fmt.Errorf("wire: encode envelope body: %w", err)
	}
	return SharedBody{body: env.Body, enc: enc}, nil
}

// Carries reports whether env carries the body b was encoded from.
func (b SharedBody) Carries(env *Envelope) bool {
	return b.enc != nil && env.Body != nil && env.Body == b.body
}

// Len returns the size of the encoded body.
func (b SharedBody) Len() int { return len(b.enc) }

// MarshalShared encodes env into a complete frame, like Marshal, but copies
// the body from b instead of encoding it again. env must carry b's body
// (b.Carries(env)). Protobuf fields may come in any order, so the frame
// decodes to the same envelope as Marshal's.
func MarshalShared(env *Envelope, b SharedBody) ([]byte, error) {
	if !b.Carries(env) {
		return nil, errors.New("wire: encode envelope: shared body of another envelope")
	}
	if env.Protocol == 0 {
		env.Protocol = ProtocolVersion
	}
	body := env.Body
	env.Body = nil
	defer func() { env.Body = body }()
	size := proto.Size(env) + len(b.enc)
	buf := make([]byte, HeaderSize, HeaderSize+size)
	putHeader(buf, size)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, env)
	if err != nil {
		return nil, fmt.Errorf("wire: encode envelope: %w", err)
	}
	return append(buf, b.enc...), nil
}

func putHeader(buf []byte, size int) {
	buf[0], buf[1] = magic[0], magic[1]
	buf[2] = ProtocolVersion
	buf[3] = 0
	binary.BigEndian.PutUint32(buf[4:8], uint32(size))
}

// parseHeader checks a frame header and returns the payload length.
func parseHeader(h []byte, maxFrame int) (int, error) {
	if len(h) < HeaderSize {
		return 0, fmt.Errorf("%w: %d header bytes, want %d", ErrShort, len(h), HeaderSize)
	}
	if h[0] != magic[0] || h[1] != magic[1] {
		return 0, fmt.Errorf("%w: magic %#x %#x", ErrMagic, h[0], h[1])
	}
	if h[2] != ProtocolVersion {
		return 0, fmt.Errorf("%w: peer speaks version %d, this node %d", ErrVersion, h[2], ProtocolVersion)
	}
	n := binary.BigEndian.Uint32(h[4:8])
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if uint64(n) > uint64(maxFrame) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, maxFrame)
	}
	return int(n), nil
}

// Unmarshal decodes one complete frame, as received in a UDP datagram.
// maxFrame <= 0 means DefaultMaxFrame.
func Unmarshal(frame []byte, maxFrame int) (*Envelope, error) {
	n, err := parseHeader(frame, maxFrame)
	if err != nil {
		return nil, err
	}
	if len(frame)-HeaderSize != n {
		return nil, fmt.Errorf("%w: header says %d payload bytes, got %d", ErrShort, n, len(frame)-HeaderSize)
	}
	return decodePayload(frame[HeaderSize:])
}

func decodePayload(p []byte) (*Envelope, error) {
	env := new(Envelope)
	if err := proto.Unmarshal(p, env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Protocol > ProtocolVersion {
		return nil, fmt.Errorf("%w: envelope protocol %d, this node %d", ErrVersion, env.Protocol, ProtocolVersion)
	}
	return env, nil
}

// ReadFrame reads one frame from a stream and decodes it. maxFrame <= 0 means
// DefaultMaxFrame. It returns io.EOF only when the stream ends cleanly between
// frames.
func ReadFrame(r io.Reader, maxFrame int) (*Envelope, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %v", ErrShort, err)
		}
		return nil, err
	}
	n, err := parseHeader(h[:], maxFrame)
	if err != nil {
		return nil, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrShort, err)
	}
	return decodePayload(p)
}

// WriteFrame encodes env and writes it to w as one frame.
func WriteFrame(w io.Writer, env *Envelope) error {
	b, err := Marshal(env)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
