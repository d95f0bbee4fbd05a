package transport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The keyring file keeps a node's keyring across restarts, in Serf's
// format: a JSON array of the keys, base64 (standard alphabet), primary
// first:
//
//	["Gvm1…=", "5Jb0…="]
//
// It is written with mode 0600, atomically (a temporary file in the same
// directory, fsynced, renamed over the old one, and the directory fsynced),
// so a crash leaves the old ring or the new one, never a mix.

// ErrKeyringFile reports a keyring file that cannot be used.
var ErrKeyringFile = errors.New("transport: bad keyring file")

// maxKeyringFile bounds what ReadKeyringFile reads: MaxKeys keys of 32
// bytes take under 1 KiB.
const maxKeyringFile = 64 << 10

// DecodeKeyringFile decodes the contents of a keyring file into its keys,
// primary first. Anything but a JSON array of 1 to MaxKeys distinct base64
// AES keys is refused with an error wrapping ErrKeyringFile; it never
// panics on arbitrary input.
func DecodeKeyringFile(data []byte) ([][]byte, error) {
	if len(data) > maxKeyringFile {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrKeyringFile, len(data), maxKeyringFile)
	}
	var texts []string
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&texts); err != nil {
		return nil, fmt.Errorf("%w: want a JSON array of base64 keys, primary first: %v", ErrKeyringFile, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON array", ErrKeyringFile)
	}
	switch {
	case len(texts) == 0:
		return nil, fmt.Errorf("%w: no key", ErrKeyringFile)
	case len(texts) > MaxKeys:
		return nil, fmt.Errorf("%w: %d keys, at most %d", ErrKeyringFile, len(texts), MaxKeys)
	}
	keys := make([][]byte, 0, len(texts))
	for i, t := range texts {
		k, err := ParseKey(t)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %w", ErrKeyringFile, i, err)
		}
		for j, have := range keys {
			if bytes.Equal(have, k) {
				return nil, fmt.Errorf("%w: key %d repeats key %d", ErrKeyringFile, i, j)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// EncodeKeyringFile returns the contents of a keyring file holding keys,
// primary first.
func EncodeKeyringFile(keys [][]byte) []byte {
	texts := make([]string, len(keys))
	for i, k := range keys {
		texts[i] = base64.StdEncoding.EncodeToString(k)
	}
	data, _ := json.Marshal(texts) // strings always encode
	return append(data, '\n')
}

// ReadKeyringFile reads the keyring file at path. A missing file is
// reported with an error satisfying errors.Is(err, fs.ErrNotExist).
func ReadKeyringFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("transport: keyring file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyringFile+1))
	if err != nil {
		return nil, fmt.Errorf("transport: keyring file %s: %w", path, err)
	}
	keys, err := DecodeKeyringFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// WriteKeyringFile writes keys, primary first, to the keyring file at path,
// mode 0600, atomically and durably.
func WriteKeyringFile(path string, keys [][]byte) error {
	if _, err := newKeyState(keys); err != nil {
		return fmt.Errorf("transport: keyring file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("transport: keyring file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("transport: keyring file %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(EncodeKeyringFile(keys)); err != nil {
		return fmt.Errorf("transport: keyring file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("transport: keyring file %s: sync: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("transport: keyring file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("transport: keyring file: %w", err)
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("transport: keyring file: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("transport: keyring file: sync directory %s: %w", dir, err)
	}
	return nil
}
