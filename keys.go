package hearsay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/transport"
	"github.com/hearsaydb/hearsay/internal/wire"
)

// Keyring rotation (hearsay keys, after Serf's keys command).
//
// A node whose gossip is encrypted (Config.SecretKey, or a keyring file)
// holds a keyring: a primary key that seals every frame it sends, and up to
// MaxKeys-1 secondary keys that also open the frames it receives. The
// methods Keys, InstallKey, UseKey and RemoveKey apply an operation to the
// keyring of every live member: the node sends a KeyOp to each one over
// gossip (sealed with the current keyring, so only a holder of a key can
// ask), each member applies it, persists its ring and answers with its key
// ids, and the caller gets every member's answer, or its silence, once all
// have answered or the context is done. The runtime handles these messages
// beside the engine, which never sees them.
//
// To rotate without losing a message: install the new key (every member
// then opens frames sealed with either key), use it (every member seals
// with it), then remove the old one.

// KeyringFile is the name of the keyring file in a node's data directory:
// the keyring as the last key operation left it, which takes precedence
// over Config.SecretKey when the node starts.
const KeyringFile = "keyring"

// MaxKeys is the most keys a keyring holds.
const MaxKeys = transport.MaxKeys

// DefaultKeyOpTimeout bounds a key operation whose context has no deadline.
const DefaultKeyOpTimeout = 10 * time.Second

const (
	// keyOpResend is how often a key operation is sent again to the
	// members that have not answered (every operation is idempotent).
	keyOpResend = time.Second
	// keyReqQueue bounds the key operations received and not yet applied;
	// beyond it they are dropped, and their senders send them again.
	keyReqQueue = 16
)

// Errors of the key operations.
var (
	// ErrNoKeyring: this node does not encrypt gossip, so it has no
	// keyring to change (start it with a secret key).
	ErrNoKeyring = errors.New("hearsay: gossip encryption is off (no secret key): no keyring to change")
	// ErrKeyRefused: the operation is refused before anything is sent: a
	// malformed key, an unknown or ambiguous key id, the primary key to
	// remove, a full keyring.
	ErrKeyRefused = errors.New("hearsay: key operation refused")
	// ErrKeyOpIncomplete: some members failed the operation or did not
	// answer in time; the KeyResponse says which.
	ErrKeyOpIncomplete = errors.New("hearsay: key operation incomplete")
)

// KeyResponse is the outcome of a key operation across the cluster, as
// Serf's: how many members it was asked of, how many answered, how many
// failed, each member's answer, and the keys they hold.
type KeyResponse struct {
	// Nodes is the number of members asked, this node included.
	Nodes int `json:"nodes"`
	// Responses is how many answered.
	Responses int `json:"responses"`
	// Errors is how many failed or did not answer.
	Errors int `json:"errors"`
	// Members is each member's answer, by name.
	Members []KeyMember `json:"members"`
	// Keys are the keys the members that answered hold, by id.
	Keys []KeyInfo `json:"keys"`
}

// KeyMember is one member's answer to a key operation.
type KeyMember struct {
	Name string `json:"name"`
	// Keys are the ids of the member's keys after the operation, primary
	// first; empty if it did not answer.
	Keys []string `json:"keys,omitempty"`
	// Error says why the operation failed on the member, or that it did
	// not answer.
	Error string `json:"error,omitempty"`
}

// KeyInfo is a key and how many of the members that answered hold it.
type KeyInfo struct {
	// ID is the key's id: the first 8 hex digits of its SHA-256.
	ID string `json:"id"`
	// Primary is the number of members for which it is the primary key.
	Primary int `json:"primary"`
	// Installed is the number of members holding it.
	Installed int `json:"installed"`
}

// KeyID returns the id of a key as KeyResponse and the key operations name
// it: the first 8 hex digits of its SHA-256.
func KeyID(key []byte) string { return transport.KeyID(key) }

// keyOpState is the key operation this node is running for a caller.
type keyOpState struct {
	id      uint64
	replies chan keyAnswer
	addrs   map[string]string // member address → name, for refusals
	names   map[string]bool   // the members asked
}

// keyAnswer is a member's reply, or a refusal notice from its address.
type keyAnswer struct {
	name    string
	reply   *wire.KeyOpReply
	refusal string
}

// keys is the node's keyring state.
type keys struct {
	ring    *transport.Keyring // nil when gossip is not encrypted
	path    string             // the keyring file; "" in memory
	applyMu sync.Mutex         // serialises changes to ring and file
	run     chan struct{}      // one coordinated operation at a time
	mu      sync.Mutex         // guards op
	op      *keyOpState
	reqs    chan *wire.Envelope // received operations, for the key server
	done    chan struct{}       // closed when the key server has stopped
}

// loadKeyring builds the node's keyring: from the keyring file in the data
// directory when there is one (it takes precedence over cfg.SecretKey),
// else from cfg.SecretKey, else none.
func loadKeyring(cfg Config, log *slog.Logger) (*transport.Keyring, string, error) {
	path := ""
	if cfg.DataDir != "" {
		path = filepath.Join(cfg.DataDir, KeyringFile)
		stored, err := transport.ReadKeyringFile(path)
		switch {
		case err == nil:
			ring, err := transport.NewKeyring(stored[0], stored[1:]...)
			if err != nil {
				return nil, "", fmt.Errorf("hearsay: keyring file %s: %w", path, err)
			}
			args := []any{"file", path, "primary", transport.KeyID(stored[0]), "keys", len(stored)}
			if len(cfg.SecretKey) > 0 && !slices.ContainsFunc(stored, func(k []byte) bool { return bytes.Equal(k, cfg.SecretKey) }) {
				log.Warn("gossip keyring loaded from the data directory; the configured secret key is not in it and is ignored (the keyring file takes precedence: remove it to start from the secret key)",
					append(args, "ignored_key", transport.KeyID(cfg.SecretKey))...)
			} else {
				log.Info("gossip keyring loaded from the data directory (it takes precedence over the secret key file)", args...)
			}
			return ring, path, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, "", fmt.Errorf("hearsay: %w (repair the file, or remove it to start from the secret key file; a current member's %s holds the cluster's keys)", err, KeyringFile)
		}
	}
	if len(cfg.SecretKey) == 0 {
		return nil, path, nil
	}
	ring, err := transport.NewKeyring(cfg.SecretKey)
	if err != nil {
		return nil, "", fmt.Errorf("hearsay: secret key: %w", err)
	}
	log.Info("gossip encrypted with the configured secret key", "primary", transport.KeyID(cfg.SecretKey))
	return ring, path, nil
}

// Keys lists the keys of every live member's keyring. Errors wrap
// ErrNoKeyring, or ErrKeyOpIncomplete when a member did not answer; the
// response holds what was learnt.
func (n *Node) Keys(ctx context.Context) (KeyResponse, error) {
	return n.keyOp(ctx, &wire.KeyOp{Kind: wire.KeyOpKind_KEY_OP_LIST})
}

// InstallKey adds key (16, 24 or 32 bytes) to the keyring of every live
// member as a secondary key: frames sealed with it are accepted from then
// on, and nothing is sealed with it until UseKey. A malformed key, or a
// full keyring here, is refused before anything is sent (ErrKeyRefused).
func (n *Node) InstallKey(ctx context.Context, key []byte) (KeyResponse, error) {
	if n.keys.ring == nil {
		return KeyResponse{}, ErrNoKeyring
	}
	if _, err := transport.NewKeyring(key); err != nil {
		return KeyResponse{}, fmt.Errorf("%w: install: %w", ErrKeyRefused, err)
	}
	ring := n.keys.ring.Keys()
	if !slices.ContainsFunc(ring, func(k []byte) bool { return bytes.Equal(k, key) }) && len(ring) >= MaxKeys {
		return KeyResponse{}, fmt.Errorf("%w: install: the keyring is full (%d keys); remove a key first", ErrKeyRefused, MaxKeys)
	}
	return n.keyOp(ctx, &wire.KeyOp{Kind: wire.KeyOpKind_KEY_OP_INSTALL, Key: bytes.Clone(key)})
}

// UseKey makes the key named id (its KeyID, or the key itself in base64)
// the primary key of every live member: they seal their frames with it
// from then on. The key must be installed everywhere first (InstallKey).
func (n *Node) UseKey(ctx context.Context, id string) (KeyResponse, error) {
	kid, err := n.resolveKey("use", id)
	if err != nil {
		return KeyResponse{}, err
	}
	return n.keyOp(ctx, &wire.KeyOp{Kind: wire.KeyOpKind_KEY_OP_USE, KeyId: kid})
}

// RemoveKey removes the key named id (its KeyID, or the key itself in
// base64) from the keyring of every live member. The primary key cannot be
// removed (ErrKeyRefused): use another key first.
func (n *Node) RemoveKey(ctx context.Context, id string) (KeyResponse, error) {
	kid, err := n.resolveKey("remove", id)
	if err != nil {
		return KeyResponse{}, err
	}
	if n.keys.ring.IDs()[0] == kid {
		return KeyResponse{}, fmt.Errorf("%w: remove: key %s is the primary key; make another key primary first (keys use)", ErrKeyRefused, kid)
	}
	return n.keyOp(ctx, &wire.KeyOp{Kind: wire.KeyOpKind_KEY_OP_REMOVE, KeyId: kid})
}

// resolveKey returns the id of the key named by s, an id or a base64 key,
// which must be in this node's keyring.
func (n *Node) resolveKey(op, s string) (string, error) {
	if n.keys.ring == nil {
		return "", ErrNoKeyring
	}
	s = strings.TrimSpace(s)
	id := strings.ToLower(s)
	if k, err := transport.ParseKey(s); err == nil && len(s) > 8 {
		id = transport.KeyID(k)
	}
	ids := n.keys.ring.IDs()
	switch matches := countOf(ids, id); {
	case s == "":
		return "", fmt.Errorf("%w: %s: no key id given", ErrKeyRefused, op)
	case matches == 0:
		return "", fmt.Errorf("%w: %s: no key %q in this node's keyring (keys: %s)", ErrKeyRefused, op, s, strings.Join(ids, ", "))
	case matches > 1:
		return "", fmt.Errorf("%w: %s: two keys of the keyring have the id %s; name the key by its base64", ErrKeyRefused, op, id)
	}
	return id, nil
}

func countOf(ids []string, id string) int {
	c := 0
	for _, x := range ids {
		if x == id {
			c++
		}
	}
	return c
}

// keyOp runs op on every live member and on this node.
func (n *Node) keyOp(ctx context.Context, op *wire.KeyOp) (KeyResponse, error) {
	if n.keys.ring == nil {
		return KeyResponse{}, ErrNoKeyring
	}
	if err := n.usableOpen(); err != nil {
		return KeyResponse{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultKeyOpTimeout)
		defer cancel()
	}
	select {
	case n.keys.run <- struct{}{}:
		defer func() { <-n.keys.run }()
	case <-ctx.Done():
		return KeyResponse{}, fmt.Errorf("hearsay: key operation: waiting for the one in progress: %w", ctx.Err())
	case <-n.closing:
		return KeyResponse{}, ErrClosed
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	op.Id = binary.LittleEndian.Uint64(idb[:])

	var targets []Member
	for _, m := range n.view.Load().members {
		if !m.Self && (m.State == StateAlive || m.State == StateSuspect) {
			targets = append(targets, m)
		}
	}
	st := &keyOpState{id: op.Id, replies: make(chan keyAnswer, 2*len(targets)+1), addrs: map[string]string{}, names: map[string]bool{}}
	for _, m := range targets {
		st.addrs[m.Address] = m.Name
		st.names[m.Name] = true
	}
	n.keys.mu.Lock()
	n.keys.op = st
	n.keys.mu.Unlock()
	defer func() {
		n.keys.mu.Lock()
		n.keys.op = nil
		n.keys.mu.Unlock()
	}()

	kind := strings.ToLower(strings.TrimPrefix(op.Kind.String(), "KEY_OP_"))
	send := func(ms []Member) {
		msgs := make([]engine.Message, len(ms))
		for i, m := range ms {
			msgs[i] = engine.Message{To: m.Address, Env: n.envelope(&wire.Envelope{Body: &wire.Envelope_KeyOp{KeyOp: op}})}
		}
		n.send(msgs)
	}
	// Sent before this node applies it: sealed with this node's primary
	// key as it was, which every member holds, so that a member missing
	// the key to use says so rather than failing to open the request.
	send(targets)
	answers := map[string]*KeyMember{}
	self := &KeyMember{Name: n.cfg.Name}
	if ids, err := n.applyKeyOp(op); err != nil {
		self.Error = err.Error()
	} else {
		self.Keys = ids
	}
	answers[n.cfg.Name] = self
	refused := map[string]string{}
	resend := time.NewTicker(keyOpResend)
	defer resend.Stop()
wait:
	for len(answers) < len(targets)+1 {
		select {
		case a := <-st.replies:
			if a.refusal != "" {
				refused[a.name] = a.refusal
				continue
			}
			if _, asked := st.names[a.name]; !asked {
				continue // not a member this operation was sent to
			}
			if _, done := answers[a.name]; done {
				continue
			}
			km := &KeyMember{Name: a.name, Error: a.reply.Error}
			if km.Error == "" {
				km.Keys = a.reply.KeyIds
			}
			answers[a.name] = km
		case <-resend.C:
			// To the members' addresses as they are now: a member that
			// restarted may have come back on another port.
			var late []Member
			for _, m := range n.view.Load().members {
				if _, ok := answers[m.Name]; !ok && st.names[m.Name] {
					late = append(late, m)
				}
			}
			send(late)
		case <-ctx.Done():
			break wait
		case <-n.closing:
			break wait
		}
	}
	resp := KeyResponse{Nodes: len(targets) + 1}
	for _, m := range targets {
		if _, ok := answers[m.Name]; !ok {
			msg := "no answer before the deadline"
			if r := refused[m.Name]; r != "" {
				msg = "it refused this node's frames: " + r
			}
			answers[m.Name] = &KeyMember{Name: m.Name, Error: msg}
		} else {
			resp.Responses++
		}
	}
	resp.Responses++ // this node
	held := map[string]*KeyInfo{}
	var fails []string
	for _, a := range answers {
		resp.Members = append(resp.Members, *a)
		if a.Error != "" {
			resp.Errors++
			fails = append(fails, a.Name+": "+a.Error)
		}
		for i, id := range a.Keys {
			ki := held[id]
			if ki == nil {
				ki = &KeyInfo{ID: id}
				held[id] = ki
			}
			ki.Installed++
			if i == 0 {
				ki.Primary++
			}
		}
	}
	sort.Slice(resp.Members, func(i, j int) bool { return resp.Members[i].Name < resp.Members[j].Name })
	for _, ki := range held {
		resp.Keys = append(resp.Keys, *ki)
	}
	sort.Slice(resp.Keys, func(i, j int) bool {
		a, b := resp.Keys[i], resp.Keys[j]
		if a.Primary != b.Primary {
			return a.Primary > b.Primary
		}
		return a.ID < b.ID
	})
	result := "ok"
	if resp.Errors > 0 {
		result = "incomplete"
	}
	n.metrics.keyOps.WithLabelValues(kind, result).Inc()
	keyID := op.KeyId
	if op.Key != nil {
		keyID = transport.KeyID(op.Key)
	}
	n.log.Info("key operation", "op", kind, "key", keyID, "nodes", resp.Nodes, "responses", resp.Responses, "errors", resp.Errors)
	if resp.Errors > 0 {
		sort.Strings(fails)
		return resp, fmt.Errorf("%w: %s failed on %d of %d members: %s", ErrKeyOpIncomplete, kind, resp.Errors, resp.Nodes, strings.Join(fails, "; "))
	}
	return resp, nil
}

// usableOpen reports ErrClosed once the node is closing.
func (n *Node) usableOpen() error {
	select {
	case <-n.closing:
		return ErrClosed
	default:
		return nil
	}
}

// envelope stamps a message of the runtime's own with this node's identity.
func (n *Node) envelope(env *wire.Envelope) *wire.Envelope {
	env.Protocol = wire.ProtocolVersion
	env.Cluster = n.cfg.Protocol.Cluster
	env.From = n.cfg.Name
	env.FromAddr = n.tr.AdvertiseAddr()
	env.FromId = n.nodeID
	return env
}

// applyKeyOp applies op to this node's keyring, persisting the new ring
// before it takes effect, and returns the ids of its keys after it.
func (n *Node) applyKeyOp(op *wire.KeyOp) ([]string, error) {
	k := &n.keys
	if k.ring == nil {
		return nil, ErrNoKeyring
	}
	k.applyMu.Lock()
	defer k.applyMu.Unlock()
	keys := k.ring.Keys()
	find := func() (int, error) {
		at := -1
		for i, key := range keys {
			if transport.KeyID(key) == op.KeyId {
				if at >= 0 {
					return -1, fmt.Errorf("two keys have the id %s", op.KeyId)
				}
				at = i
			}
		}
		return at, nil
	}
	var next [][]byte
	switch op.Kind {
	case wire.KeyOpKind_KEY_OP_LIST:
	case wire.KeyOpKind_KEY_OP_INSTALL:
		if _, err := transport.NewKeyring(op.Key); err != nil {
			return nil, fmt.Errorf("install: %w", err)
		}
		if slices.ContainsFunc(keys, func(have []byte) bool { return bytes.Equal(have, op.Key) }) {
			break
		}
		if len(keys) >= MaxKeys {
			return nil, fmt.Errorf("install: the keyring is full (%d keys)", MaxKeys)
		}
		next = append(keys, op.Key)
	case wire.KeyOpKind_KEY_OP_USE:
		i, err := find()
		switch {
		case err != nil:
			return nil, fmt.Errorf("use: %w", err)
		case i < 0:
			return nil, fmt.Errorf("use: key %s is not installed here (install it first)", op.KeyId)
		case i > 0:
			next = slices.Clone(keys)
			next[0], next[i] = next[i], next[0]
		}
	case wire.KeyOpKind_KEY_OP_REMOVE:
		i, err := find()
		switch {
		case err != nil:
			return nil, fmt.Errorf("remove: %w", err)
		case i == 0:
			return nil, fmt.Errorf("remove: key %s is this member's primary key", op.KeyId)
		case i > 0:
			next = slices.Delete(slices.Clone(keys), i, i+1)
		}
	default:
		return nil, fmt.Errorf("unknown key operation %v", op.Kind)
	}
	if next != nil {
		if k.path != "" {
			if err := transport.WriteKeyringFile(k.path, next); err != nil {
				return nil, fmt.Errorf("keyring not changed: %w", err)
			}
		}
		if err := k.ring.SetKeys(next); err != nil {
			return nil, fmt.Errorf("keyring not changed: %w", err)
		}
		n.log.Info("keyring changed", "primary", transport.KeyID(next[0]), "keys", k.ring.IDs(), "persisted", k.path != "")
	}
	return k.ring.IDs(), nil
}

// stepKeyOp takes a key operation message off the loop: a request goes to
// the key server (dropped when it is behind: the sender repeats it), a
// reply to the operation this node runs.
func (n *Node) stepKeyOp(env *wire.Envelope) {
	if env.Cluster != n.cfg.Protocol.Cluster || env.From == "" || env.From == n.cfg.Name {
		n.log.Debug("key operation message dropped", "from", env.From, "cluster", env.Cluster)
		return
	}
	switch b := env.Body.(type) {
	case *wire.Envelope_KeyOp:
		select {
		case n.keys.reqs <- env:
		default:
			n.metrics.keyDropped.Inc()
		}
	case *wire.Envelope_KeyOpReply:
		n.keys.mu.Lock()
		st := n.keys.op
		n.keys.mu.Unlock()
		if st == nil || st.id != b.KeyOpReply.Id {
			return
		}
		select {
		case st.replies <- keyAnswer{name: env.From, reply: b.KeyOpReply}:
		default:
		}
	}
}

// keyRefused hands a refusal notice from addr to the key operation in
// progress, if addr is one of its members: it explains a silence.
func (n *Node) keyRefused(addr, reason string) {
	n.keys.mu.Lock()
	st := n.keys.op
	n.keys.mu.Unlock()
	if st == nil {
		return
	}
	if name, ok := st.addrs[addr]; ok {
		select {
		case st.replies <- keyAnswer{name: name, refusal: reason}:
		default:
		}
	}
}

// keyServer applies the key operations other members send, one at a time,
// off the event loop (persisting the ring waits for the disk), and answers
// each.
func (n *Node) keyServer() {
	defer close(n.keys.done)
	for {
		select {
		case <-n.closing:
			return
		case env := <-n.keys.reqs:
			op := env.GetKeyOp()
			reply := &wire.KeyOpReply{Id: op.Id}
			ids, err := n.applyKeyOp(op)
			if err != nil {
				reply.Error = err.Error()
				n.log.Warn("key operation failed", "from", env.From, "op", op.Kind.String(), "key", op.KeyId, "err", err)
			}
			reply.KeyIds = ids
			n.send([]engine.Message{{To: env.FromAddr, Env: n.envelope(&wire.Envelope{Body: &wire.Envelope_KeyOpReply{KeyOpReply: reply}})}})
		}
	}
}
