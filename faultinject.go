//go:build faultinject

package hearsay

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/hearsaydb/hearsay/store"
)

// Fault injection for real-process tests, compiled only with the
// faultinject build tag (test/cluster builds such a binary; the shipped one
// has none of this):
//
//   - HEARSAY_FAULT_SYNC_DELAY (a duration) makes every store sync take
//     that much longer: a slow disk.
//   - HEARSAY_FAULT_SYNC_FAIL (a file path) makes every sync fail with EIO
//     while that file exists: a failing disk.
func init() {
	delay, _ := time.ParseDuration(os.Getenv("HEARSAY_FAULT_SYNC_DELAY"))
	failFile := os.Getenv("HEARSAY_FAULT_SYNC_FAIL")
	if delay <= 0 && failFile == "" {
		return
	}
	wrapStore = func(st store.Store, log *slog.Logger) store.Store {
		log.Warn("fault injection: store syncs are slowed or failed", "delay", delay, "fail_file", failFile)
		return &faultStore{Store: st, delay: delay, failFile: failFile}
	}
}

// faultStore slows or fails Sync, and passes the rest through.
type faultStore struct {
	store.Store
	delay    time.Duration
	failFile string
}

func (f *faultStore) Sync() error {
	if f.delay > 0 {
		time.Sleep(f.delay) // the injected fault: a slow fsync
	}
	if f.failFile != "" {
		if _, err := os.Stat(f.failFile); err == nil {
			return fmt.Errorf("fault injection: sync: %w", &os.PathError{Op: "fsync", Path: f.failFile, Err: syscall.EIO})
		}
	}
	return f.Store.Sync()
}

func (f *faultStore) DiskUsage() (avail, total uint64, err error) {
	if ds, ok := f.Store.(diskStore); ok {
		return ds.DiskUsage()
	}
	return 0, 0, errors.ErrUnsupported
}

func (f *faultStore) Health() error {
	if ds, ok := f.Store.(diskStore); ok {
		return ds.Health()
	}
	return nil
}

func (f *faultStore) Recover() error {
	if ds, ok := f.Store.(diskStore); ok {
		return ds.Recover()
	}
	return nil
}
