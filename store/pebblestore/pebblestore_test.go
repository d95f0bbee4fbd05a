package pebblestore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/storetest"
)

// quiet is the logger tests hand to Open.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func mustOpen(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func closeStore(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func rec(key, value string, hlc uint64) store.Record {
	return store.Record{Key: []byte(key), Value: []byte(value), Version: store.Version{HLC: hlc, Node: 1}}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, t.TempDir(), Options{})
	})
}

func TestChangeLog(t *testing.T) {
	storetest.RunChangeLog(t, storetest.ChangeLogOpener{
		Open: func(t *testing.T, l store.ChangeLogLimits) store.Store {
			return mustOpen(t, t.TempDir(), Options{ChangeLog: l, CacheSize: 1 << 20})
		},
		Reopen: func(t *testing.T, s store.Store, l store.ChangeLogLimits) store.Store {
			dir := s.(*Store).Dir()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return mustOpen(t, dir, Options{ChangeLog: l, CacheSize: 1 << 20})
		},
	})
}

func TestConformanceNoSync(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, t.TempDir(), Options{NoSync: true, CacheSize: 1 << 20})
	})
}

func TestReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "data")
	s := mustOpen(t, dir, Options{})
	if s.Dir() != dir {
		t.Fatalf("Dir() = %q, want %q", s.Dir(), dir)
	}
	var recs []store.Record
	for i := range 1000 {
		recs = append(recs, rec(fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i), uint64(i+1)))
	}
	recs = append(recs, store.Record{Key: []byte("dead"), Version: store.Version{HLC: 7, Node: 3}, Tombstone: true})
	if _, err := s.Apply(recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove([]byte("k0000"), recs[0].Version); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta([]byte("node"), []byte("n1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	// Written after the last Sync: Close must still keep it.
	if err := s.SetMeta([]byte("clock"), []byte("42")); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}

	s = mustOpen(t, dir, Options{})
	defer closeStore(t, s)
	if _, ok, _ := s.Get([]byte("k0000")); ok {
		t.Fatal("removed record came back after reopen")
	}
	for _, want := range recs[1:] {
		got, ok, err := s.Get(want.Key)
		if err != nil || !ok || !storetest.Equal(got, want) {
			t.Fatalf("Get(%q) after reopen = %s, %v, %v; want %s", want.Key, storetest.Format(got), ok, err, storetest.Format(want))
		}
	}
	for k, want := range map[string]string{"node": "n1", "clock": "42"} {
		if v, ok, err := s.GetMeta([]byte(k)); err != nil || !ok || string(v) != want {
			t.Fatalf("GetMeta(%q) after reopen = %q, %v, %v; want %q", k, v, ok, err, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, MarkerFile)); err != nil || string(b) != string(markerContents()) {
		t.Fatalf("marker = %q, %v", b, err)
	}
}

func TestForeignDir(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(foreign, []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{Logger: quiet})
	if !errors.Is(err, ErrForeignDir) {
		t.Fatalf("Open of a foreign directory: err = %v, want ErrForeignDir", err)
	}
	for _, want := range []string{"not a hearsay data directory", dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "precious.txt" {
		t.Fatalf("Open changed the foreign directory: %v", entries)
	}
	if b, _ := os.ReadFile(foreign); string(b) != "not yours" {
		t.Fatalf("foreign file now holds %q", b)
	}

	// A pebble database made by something else is foreign too.
	other := t.TempDir()
	db, err := pebble.Open(other, &pebble.Options{Logger: slogLogger{l: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(other, Options{Logger: quiet}); !errors.Is(err, ErrForeignDir) {
		t.Fatalf("Open of another program's pebble directory: err = %v, want ErrForeignDir", err)
	}

	// So is a path that is a file.
	if _, err := Open(foreign, Options{Logger: quiet}); !errors.Is(err, ErrForeignDir) {
		t.Fatalf("Open of a file: err = %v, want ErrForeignDir", err)
	}
}

func TestEmptyDirLike(t *testing.T) {
	for name, setup := range map[string]func(dir string) error{
		"empty":       func(string) error { return nil },
		"lost+found":  func(dir string) error { return os.Mkdir(filepath.Join(dir, "lost+found"), 0o700) },
		"marker only": func(dir string) error { return os.WriteFile(filepath.Join(dir, MarkerFile), markerContents(), 0o600) },
		"temp marker": func(dir string) error { return os.WriteFile(filepath.Join(dir, markerTemp), []byte("hear"), 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := setup(dir); err != nil {
				t.Fatal(err)
			}
			s := mustOpen(t, dir, Options{})
			if _, err := s.Apply([]store.Record{rec("a", "1", 1)}); err != nil {
				t.Fatal(err)
			}
			closeStore(t, s)
			s = mustOpen(t, dir, Options{})
			defer closeStore(t, s)
			if _, ok, err := s.Get([]byte("a")); err != nil || !ok {
				t.Fatalf("Get after reopen: %v, %v", ok, err)
			}
			if _, err := os.Stat(filepath.Join(dir, markerTemp)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temporary marker left behind: %v", err)
			}
		})
	}
}

func TestMarkerFormat(t *testing.T) {
	for name, contents := range map[string]string{
		"future version":   "hearsay data directory\nformat 2\n",
		"version zero":     "hearsay data directory\nformat 0\n",
		"garbled version":  "hearsay data directory\nformat one\n",
		"no format line":   "hearsay data directory\n",
		"wrong title":      "something else\nformat 1\n",
		"empty":            "",
		"binary junk":      "\x00\xff\x13\x37",
		"title only, crlf": "hearsay data directory\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir, Options{})
			closeStore(t, s)
			marker := filepath.Join(dir, MarkerFile)
			if err := os.WriteFile(marker, []byte(contents), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir, Options{Logger: quiet})
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Open with marker %q: err = %v, want ErrFormat", contents, err)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the directory", err)
			}
			if b, _ := os.ReadFile(marker); string(b) != contents {
				t.Fatalf("Open rewrote the marker to %q", b)
			}
		})
	}
	// CRLF line ends and extra lines are tolerated.
	dir := t.TempDir()
	closeStore(t, mustOpen(t, dir, Options{}))
	if err := os.WriteFile(filepath.Join(dir, MarkerFile), []byte("hearsay data directory\r\ncreated by hand\r\nformat 1\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closeStore(t, mustOpen(t, dir, Options{}))
}

func TestOpenTwice(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	defer closeStore(t, s)
	if s2, err := Open(dir, Options{Logger: quiet}); err == nil {
		_ = s2.Close()
		t.Fatal("a second Open of a directory in use succeeded")
	} else if !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q does not name the directory", err)
	}
}

func TestMarkerWithoutDatabase(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, MarkerFile), markerContents(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stray"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{Logger: quiet})
	if err == nil || !errors.Is(err, pebble.ErrDBDoesNotExist) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open of a marked directory without a database: err = %v", err)
	}
}

func TestPebbleCorruption(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	if _, err := s.Apply([]store.Record{rec("a", "1", 1)}); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST file found")
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, bytes.Repeat([]byte("garbage!"), 512), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Open(dir, Options{Logger: quiet})
	if err == nil {
		t.Fatal("Open of a database with a garbled MANIFEST succeeded")
	}
	if !strings.Contains(err.Error(), "pebblestore: open "+dir) {
		t.Fatalf("error %q does not name the directory", err)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a database with a garbled MANIFEST: err = %v, want ErrCorrupt", err)
	}
}

func TestCorruptRecord(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	defer closeStore(t, s)
	if _, err := s.Apply([]store.Record{rec("a", "fine", 1), rec("c", "fine", 1)}); err != nil {
		t.Fatal(err)
	}
	good := make([]byte, headerLen+3)
	encodeRecord(good, rec("b", "abc", 9))
	bad := map[string][]byte{
		"empty":         {},
		"short":         good[:headerLen-1],
		"unknown flags": append(append(bytes.Clone(good[:offFlags]), 0x80), good[headerLen:]...),
		"bad format":    append([]byte{99}, good[1:]...),
		"short signed":  append(append(bytes.Clone(good[:offFlags]), flagSigned), make([]byte, SigLen-1)...),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			if err := s.db.Set(dbKey(nsRecord, []byte("b")), b, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			_, ok, err := s.Get([]byte("b"))
			if !errors.Is(err, ErrCorrupt) || ok {
				t.Fatalf("Get of corrupt record: ok %v, err %v; want ErrCorrupt", ok, err)
			}
			if !strings.Contains(err.Error(), `"b"`) {
				t.Errorf("error %q does not name the key", err)
			}
			n := 0
			err = s.Scan(nil, nil, func(store.Record) bool { n++; return true })
			if !errors.Is(err, ErrCorrupt) || n != 0 {
				t.Fatalf("Scan over corrupt record: %d records, err %v; want ErrCorrupt", n, err)
			}
			// The records around it are still readable.
			if r, ok, err := s.Get([]byte("a")); err != nil || !ok || string(r.Value) != "fine" {
				t.Fatalf("Get(a) = %v, %v", ok, err)
			}
			if _, err := s.Apply([]store.Record{rec("b", "new", 10)}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Apply over corrupt record: err %v, want ErrCorrupt", err)
			}
			if err := s.Remove([]byte("b"), store.Version{HLC: 9, Node: 1}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Remove of corrupt record: err %v, want ErrCorrupt", err)
			}
		})
	}
	// The good encoding reads back.
	if err := s.db.Set(dbKey(nsRecord, []byte("b")), good, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := s.Get([]byte("b")); err != nil || !ok || !storetest.Equal(r, rec("b", "abc", 9)) {
		t.Fatalf("Get(b) = %s, %v, %v", storetest.Format(r), ok, err)
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	for _, r := range []store.Record{
		{Key: []byte("k"), Value: []byte("v"), Version: store.Version{HLC: 1, Node: 2}},
		{Key: []byte("k"), Version: store.Version{HLC: ^uint64(0), Node: ^uint64(0)}, Tombstone: true},
		{Key: []byte{}, Value: bytes.Repeat([]byte{0xff}, 1000), Version: store.Version{HLC: 1 << 40, Node: 7}},
		{Key: []byte("s"), Value: []byte("signed"), Version: store.Version{HLC: 3, Node: 4}, Sig: bytes.Repeat([]byte{7}, SigLen)},
		{Key: []byte("t"), Version: store.Version{HLC: 3, Node: 4}, Tombstone: true, Sig: bytes.Repeat([]byte{8}, SigLen)},
	} {
		b := make([]byte, encodedLen(r))
		encodeRecord(b, r)
		got, err := decodeRecord(r.Key, b)
		if err != nil || !storetest.Equal(got, r) {
			t.Fatalf("decode(encode(%s)) = %s, %v", storetest.Format(r), storetest.Format(got), err)
		}
		b[headerLen-1] ^= 0xff // flags
		if _, err := decodeRecord(r.Key, b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decode with bad flags: err %v", err)
		}
	}
}

// FuzzDecodeRecord checks that no input makes decodeRecord panic, and that
// whatever it accepts encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	good := make([]byte, headerLen+2)
	encodeRecord(good, rec("k", "hi", 3))
	f.Add([]byte("k"), good)
	f.Add([]byte(""), []byte{})
	f.Add([]byte("x"), good[:5])
	f.Fuzz(func(t *testing.T, key, b []byte) {
		r, err := decodeRecord(key, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		out := make([]byte, encodedLen(r))
		encodeRecord(out, r)
		if !bytes.Equal(out, b) || !bytes.Equal(r.Key, key) {
			t.Fatalf("re-encoding %x gave %x", b, out)
		}
	})
}

func TestBounds(t *testing.T) {
	for _, c := range []struct {
		prefix, start, lower, upper string
	}{
		{"", "", "r", "s"},
		{"ab", "", "rab", "rac"},
		{"ab", "aa", "rab", "rac"},
		{"ab", "abc", "rabc", "rac"},
		{"a\xff", "", "ra\xff", "rb"},
		{"\xff\xff", "", "r\xff\xff", "s"},
	} {
		lo, up := bounds(nsRecord, []byte(c.prefix), []byte(c.start))
		if string(lo) != c.lower || string(up) != c.upper {
			t.Errorf("bounds(%q, %q) = %q, %q; want %q, %q", c.prefix, c.start, lo, up, c.lower, c.upper)
		}
	}
}

// TestSyncDurability crashes an in-memory file system that keeps only what
// was fsynced, and checks that Sync made every earlier write durable across
// memtable and WAL rotations, and that writes after the last Sync are lost
// (which shows the test can tell).
func TestSyncDurability(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			fsys := vfs.NewCrashableMem()
			const dir = "/data/hearsay"
			s, err := open(dir, Options{Logger: quiet, NoSync: noSync}, fsys)
			if err != nil {
				t.Fatal(err)
			}
			value := bytes.Repeat([]byte("v"), 4096)
			// About 12 MiB: several 4 MiB memtables, so the WAL rotates.
			const batches, perBatch = 48, 64
			for b := range batches {
				var recs []store.Record
				for i := range perBatch {
					n := b*perBatch + i
					recs = append(recs, store.Record{Key: fmt.Appendf(nil, "k%06d", n), Value: value, Version: store.Version{HLC: uint64(n + 1), Node: 1}})
				}
				if _, err := s.Apply(recs); err != nil {
					t.Fatal(err)
				}
				if b%4 == 3 {
					if err := s.SetMeta([]byte("synced"), fmt.Appendf(nil, "%d", b)); err != nil {
						t.Fatal(err)
					}
					if err := s.Sync(); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Apply asks for its sync at once, so only metadata (held in
			// memory until the next commit) is sure to be lost.
			if err := s.SetMeta([]byte("unsynced"), []byte("x")); err != nil {
				t.Fatal(err)
			}
			crashed := fsys.CrashClone(vfs.CrashCloneCfg{})
			closeStore(t, s)

			s, err = open(dir, Options{Logger: quiet}, crashed)
			if err != nil {
				t.Fatalf("open after crash: %v", err)
			}
			defer closeStore(t, s)
			present := 0
			for n := range batches * perBatch {
				_, ok, err := s.Get(fmt.Appendf(nil, "k%06d", n))
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					present++
				}
			}
			_, unsynced, err := s.GetMeta([]byte("unsynced"))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after crash: %d of %d synced records present; unsynced present: %v", present, batches*perBatch, unsynced)
			if noSync {
				// Nothing was fsynced, but pebble syncs when it rotates
				// the WAL and flushes, so only some writes are lost.
				if present == batches*perBatch {
					t.Fatal("with NoSync every record survived the crash; the test cannot tell")
				}
				return
			}
			if present != batches*perBatch {
				t.Fatalf("%d of %d synced records lost in the crash", batches*perBatch-present, batches*perBatch)
			}
			if v, ok, err := s.GetMeta([]byte("synced")); err != nil || !ok || string(v) != fmt.Sprint(batches-1) {
				t.Fatalf("GetMeta(synced) = %q, %v, %v", v, ok, err)
			}
			if unsynced {
				t.Fatal("a write after the last Sync survived a crash that keeps only synced data; the test cannot tell")
			}
		})
	}
}

func TestSyncSkipsFsyncWhenClean(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.unsynced() {
		t.Fatal("fresh store has something to sync")
	}
	for _, write := range []func() error{
		func() error {
			_, err := s.Apply([]store.Record{{Key: []byte("k"), Value: []byte("v"), Version: store.Version{HLC: 1, Node: 1}}})
			return err
		},
		func() error { return s.SetMeta([]byte("m"), []byte("v")) },
		func() error { return s.Remove([]byte("k"), store.Version{HLC: 1, Node: 1}) },
	} {
		if err := write(); err != nil {
			t.Fatal(err)
		}
		if !s.unsynced() {
			t.Fatal("write left Sync nothing to do")
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		if s.unsynced() {
			t.Fatal("Sync left something unsynced")
		}
	}
}
