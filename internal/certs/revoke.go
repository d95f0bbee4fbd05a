package certs

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// A Revocation withdraws a node name, or a client name, from a cluster:
// signed by the CA's key, it says that every certificate naming the node
// (CN), or every client certificate of that name, is revoked from time At
// on. Revoking the name rather than one certificate keeps the check to one
// lookup everywhere (frames, records, members, HTTP requests); a node that
// is repaired, or a client whose key leaked, comes back under a new name.
//
// Its canonical encoding (Marshal) is small and fixed in order, so that
// the CA signs exactly what every node checks:
//
//	magic "HSRV" (node) or "HSRC" (client) (4) | version 1 (1) | name length (1) | name | at (8, Unix nanoseconds, big endian) | Ed25519 signature (64)
//
// The signature covers everything before it, magic included, so a node's
// revocation can never be taken for a client's of the same name, nor the
// reverse.
type Revocation struct {
	// Name is the revoked node's or client's name.
	Name string
	// Client is set for the revocation of a client certificate's name
	// (hearsay cert revoke --client), unset for a node's.
	Client bool
	// At is when the revocation takes effect: frames and records the node
	// signed after it are refused.
	At time.Time
	// Sig is the CA's signature over the encoding before it.
	Sig []byte
}

// RevocationFile is the file in a certs directory that keeps the
// revocations issued with hearsay cert revoke, one encoding per line in
// hex, for hearsay cert list.
const RevocationFile = "revoked.list"

const (
	revMagic       = "HSRV"
	revClientMagic = "HSRC"
	revVersion     = 1
	revFixed       = len(revMagic) + 1 + 1 + 8 + ed25519.SignatureSize
	// MaxRevocationSize is the largest encoded revocation.
	MaxRevocationSize = revFixed + 64
)

// ErrRevocation reports a malformed or badly signed revocation.
var ErrRevocation = errors.New("invalid revocation")

// NewRevocation makes the revocation of node name from at, signed with
// the CA key.
func NewRevocation(name string, at time.Time, caKey ed25519.PrivateKey) (Revocation, error) {
	return newRevocation(Revocation{Name: name, At: at}, caKey)
}

// NewClientRevocation makes the revocation of client name from at, signed
// with the CA key: every client certificate of that name is refused by
// every agent.
func NewClientRevocation(name string, at time.Time, caKey ed25519.PrivateKey) (Revocation, error) {
	return newRevocation(Revocation{Name: name, At: at, Client: true}, caKey)
}

func newRevocation(r Revocation, caKey ed25519.PrivateKey) (Revocation, error) {
	if err := CheckName(r.kind(), r.Name); err != nil {
		return Revocation{}, fmt.Errorf("revoke: %w", err)
	}
	r.At = time.Unix(0, r.At.UnixNano()).UTC()
	r.Sig = ed25519.Sign(caKey, r.signed())
	return r, nil
}

// kind is "node" or "client".
func (r Revocation) kind() string {
	if r.Client {
		return "client"
	}
	return "node"
}

// signed returns the encoding the signature covers.
func (r Revocation) signed() []byte {
	b := make([]byte, 0, revFixed+len(r.Name))
	if r.Client {
		b = append(b, revClientMagic...)
	} else {
		b = append(b, revMagic...)
	}
	b = append(b, revVersion, byte(len(r.Name)))
	b = append(b, r.Name...)
	return binary.BigEndian.AppendUint64(b, uint64(r.At.UnixNano()))
}

// Marshal returns the canonical encoding.
func (r Revocation) Marshal() []byte { return append(r.signed(), r.Sig...) }

// UnmarshalRevocation decodes a revocation without checking its signature
// (see Verify). It refuses anything but an exact canonical encoding.
func UnmarshalRevocation(b []byte) (Revocation, error) {
	if len(b) < revFixed {
		return Revocation{}, fmt.Errorf("%w: %d bytes, at least %d", ErrRevocation, len(b), revFixed)
	}
	if len(b) > MaxRevocationSize {
		return Revocation{}, fmt.Errorf("%w: %d bytes, at most %d", ErrRevocation, len(b), MaxRevocationSize)
	}
	var r Revocation
	switch string(b[:4]) {
	case revMagic:
	case revClientMagic:
		r.Client = true
	default:
		return Revocation{}, fmt.Errorf("%w: bad magic %q", ErrRevocation, b[:4])
	}
	if b[4] != revVersion {
		return Revocation{}, fmt.Errorf("%w: version %d, want %d", ErrRevocation, b[4], revVersion)
	}
	n := int(b[5])
	if len(b) != revFixed+n {
		return Revocation{}, fmt.Errorf("%w: name of %d bytes in %d bytes, want %d", ErrRevocation, n, len(b), revFixed+n)
	}
	r.Name = string(b[6 : 6+n])
	if err := CheckName(r.kind(), r.Name); err != nil {
		return Revocation{}, fmt.Errorf("%w: %w", ErrRevocation, err)
	}
	at := int64(binary.BigEndian.Uint64(b[6+n:]))
	if at <= 0 {
		return Revocation{}, fmt.Errorf("%w: time %d before 1970", ErrRevocation, at)
	}
	r.At, r.Sig = time.Unix(0, at).UTC(), bytes.Clone(b[14+n:])
	return r, nil
}

// Verify checks the revocation's signature with the CA certificate's key.
func (r Revocation) Verify(ca *x509.Certificate) error {
	pub, ok := ca.PublicKey.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("%w: the CA key is not Ed25519", ErrRevocation)
	}
	if len(r.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, r.signed(), r.Sig) {
		return fmt.Errorf("%w: revocation of %s %q is not signed by this cluster's CA (%s)", ErrRevocation, r.kind(), r.Name, CACert)
	}
	return nil
}

// ParseRevocation decodes b and verifies it against ca.
func ParseRevocation(b []byte, ca *x509.Certificate) (Revocation, error) {
	r, err := UnmarshalRevocation(b)
	if err != nil {
		return Revocation{}, err
	}
	if err := r.Verify(ca); err != nil {
		return Revocation{}, err
	}
	return r, nil
}

// DefaultMaxRevocations bounds a RevocationList.
const DefaultMaxRevocations = 4096

// RevocationList is the set of revoked names of one kind (nodes, or
// clients) a node knows, with the earliest revocation time of each. It is safe for concurrent use: the
// transport reads it for every frame, record verifiers for every record.
type RevocationList struct {
	mu   sync.RWMutex
	at   map[string]time.Time
	max  int
	full int // revocations dropped because the list was full
}

// NewRevocationList returns an empty list holding at most max names
// (DefaultMaxRevocations if max <= 0).
func NewRevocationList(max int) *RevocationList {
	if max <= 0 {
		max = DefaultMaxRevocations
	}
	return &RevocationList{at: map[string]time.Time{}, max: max}
}

// Add records a verified revocation. It reports whether the list changed
// (a new name, or an earlier time for a known one). A list that is full
// refuses new names and counts them (Dropped).
func (l *RevocationList) Add(r Revocation) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, ok := l.at[r.Name]
	switch {
	case ok && !r.At.Before(old):
		return false
	case !ok && len(l.at) >= l.max:
		l.full++
		return false
	}
	l.at[r.Name] = r.At
	return true
}

// Revoked reports whether name is revoked, and from when: a record or
// frame name signed after at must be refused. This is the check for
// signed records: refuse a record whose signer is revoked and whose
// version time is after at.
func (l *RevocationList) Revoked(name string) (at time.Time, ok bool) {
	if l == nil {
		return time.Time{}, false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	at, ok = l.at[name]
	return at, ok
}

// Len returns the number of revoked names.
func (l *RevocationList) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.at)
}

// Dropped returns how many revocations were refused because the list was
// full.
func (l *RevocationList) Dropped() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.full
}

// Names returns the revoked names, sorted.
func (l *RevocationList) Names() []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]string, 0, len(l.at))
	for n := range l.at {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// LoadCAKey reads the CA's key: keyFile, or dir/ca.key when empty.
func LoadCAKey(dir, keyFile string) (ed25519.PrivateKey, error) {
	if keyFile == "" {
		keyFile = filepath.Join(dir, CAKey)
	}
	return loadKey(keyFile)
}

// AppendRevocation keeps r in dir's RevocationFile (for hearsay cert
// list).
func AppendRevocation(dir string, r Revocation) error {
	f, err := os.OpenFile(filepath.Join(dir, RevocationFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, CertMode)
	if err != nil {
		return fmt.Errorf("keep revocation: %w", err)
	}
	_, err = fmt.Fprintf(f, "%x\n", r.Marshal())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("keep revocation: %w", err)
	}
	return nil
}

// ReadRevocations reads dir's RevocationFile; a missing file is no
// revocation. Lines that do not decode are skipped.
func ReadRevocations(dir string) ([]Revocation, error) {
	data, err := os.ReadFile(filepath.Join(dir, RevocationFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	var out []Revocation
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		b, err := hex.DecodeString(string(line))
		if err != nil {
			continue
		}
		if r, err := UnmarshalRevocation(b); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
