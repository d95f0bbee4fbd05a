package pebblestore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The marker file identifies a hearsay data directory. It is written, and
// synced, before pebble creates anything, so a directory holding files but
// no marker was made by something else and is never touched.
const (
	// MarkerFile is the name of the marker file in a data directory.
	MarkerFile = "HEARSAY"
	// FormatVersion is the on-disk format this package reads and writes:
	// the key layout and record encoding described in the package
	// documentation.
	FormatVersion = 1

	markerTemp  = MarkerFile + ".tmp"
	markerTitle = "hearsay data directory"
)

// markerContents returns the text of a marker file for FormatVersion.
func markerContents() []byte {
	return fmt.Appendf(nil, "%s\nformat %d\n", markerTitle, FormatVersion)
}

// prepareDir checks that dir is usable as a data directory, creating it and
// its marker when it is missing or empty. It reports whether pebble has to
// create a new database there (true) or open an existing one (false).
func prepareDir(fsys vfs.FS, dir string) (create bool, err error) {
	fi, err := fsys.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := mkdirAll(fsys, dir); err != nil {
			return false, err
		}
		return true, writeMarker(fsys, dir)
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%w: it is a file, not a directory", ErrForeignDir)
	}

	names, err := fsys.List(dir)
	if err != nil {
		return false, err
	}
	hasMarker, others := false, 0
	for _, name := range names {
		switch name {
		case MarkerFile:
			hasMarker = true
		case markerTemp:
			// Left by a crash while the marker was being written: only
			// ours, and never read.
			if err := fsys.Remove(fsys.PathJoin(dir, markerTemp)); err != nil {
				return false, err
			}
		case "lost+found":
			// A file system's own directory, found at the root of a
			// freshly made volume mounted as the data directory.
		default:
			others++
		}
	}
	if !hasMarker {
		if others > 0 {
			return false, fmt.Errorf("%w: it holds %d entries but no %s marker file; refusing to touch it", ErrForeignDir, others, MarkerFile)
		}
		return true, writeMarker(fsys, dir)
	}
	if err := checkMarker(fsys, dir); err != nil {
		return false, err
	}
	// A marker alone means creation was interrupted before pebble wrote
	// anything: create the database now.
	return others == 0, nil
}

// mkdirAll creates dir and any missing parents, then syncs the parent of
// each directory it created so that the new entries survive a crash.
func mkdirAll(fsys vfs.FS, dir string) error {
	var created []string
	for d := dir; ; {
		if _, err := fsys.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		created = append(created, d)
		parent := fsys.PathDir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := fsys.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	// Sync from the top down: a parent's entry for a child is only useful
	// once the parent itself is durable.
	for i := len(created) - 1; i >= 0; i-- {
		if err := syncDir(fsys, fsys.PathDir(created[i])); err != nil {
			return err
		}
	}
	return nil
}

// checkMarker reads dir's marker file and checks its format version.
func checkMarker(fsys vfs.FS, dir string) error {
	path := fsys.PathJoin(dir, MarkerFile)
	f, err := fsys.Open(path)
	if err != nil {
		return err
	}
	// A real marker is a few dozen bytes; read no more than a page.
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	lines := strings.Split(string(b), "\n")
	if strings.TrimSpace(lines[0]) != markerTitle {
		return fmt.Errorf("%w: %s does not start with %q", ErrFormat, path, markerTitle)
	}
	for _, line := range lines[1:] {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "format ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%w: %s: bad format line %q", ErrFormat, path, line)
		}
		if n != FormatVersion {
			return fmt.Errorf("%w: %s: format version %d, this build reads only version %d", ErrFormat, path, n, FormatVersion)
		}
		return nil
	}
	return fmt.Errorf("%w: %s has no format line", ErrFormat, path)
}

// writeMarker durably writes dir's marker file: to a temporary name first,
// then renamed into place, so that a crash leaves either no marker or a
// whole one.
func writeMarker(fsys vfs.FS, dir string) error {
	tmp := fsys.PathJoin(dir, markerTemp)
	f, err := fsys.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	_, err = f.Write(markerContents())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("write marker: %w", err)
	}
	if err := fsys.Rename(tmp, fsys.PathJoin(dir, MarkerFile)); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	return syncDir(fsys, dir)
}

// syncDir fsyncs a directory so that entries created in it survive a crash.
func syncDir(fsys vfs.FS, dir string) error {
	d, err := fsys.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
