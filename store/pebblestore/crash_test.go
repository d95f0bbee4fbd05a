package pebblestore

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hearsaydb/hearsay/store"
)

// crashDirEnv tells the test binary, re-executed by TestCrash, to run as the
// crashing child and where its data directory is.
const crashDirEnv = "HEARSAY_PEBBLESTORE_CRASH_DIR"

// crashRecords returns the records the child writes in step i: a few keys of
// its own, with values large enough to rotate memtables and WAL files during
// the test, and an update of a key shared by every step.
func crashRecords(i int) []store.Record {
	recs := make([]store.Record, 0, 1+i%4)
	for j := range 1 + i%4 {
		recs = append(recs, store.Record{
			Key:     fmt.Appendf(nil, "step/%06d/%d", i, j),
			Value:   crashValue(i, j),
			Version: store.Version{HLC: uint64(i + 1), Node: uint64(j + 1)},
		})
	}
	return append(recs, store.Record{
		Key:     []byte("latest"),
		Value:   fmt.Appendf(nil, "%d", i),
		Version: store.Version{HLC: uint64(i + 1), Node: 9},
	})
}

func crashValue(i, j int) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "%06d.%d|", i, j), 4096/9)
}

// TestCrashChild is the child half of TestCrash; it skips unless run by it.
// It applies and syncs step after step, printing "synced N" once step N's
// Sync has returned, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	s, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		fmt.Fprintf(os.Stdout, "error %v\n", err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		if _, err := s.Apply(crashRecords(i)); err != nil {
			fmt.Fprintf(os.Stdout, "error %v\n", err)
			os.Exit(2)
		}
		if err := s.SetMeta([]byte("step"), fmt.Appendf(nil, "%d", i)); err != nil {
			fmt.Fprintf(os.Stdout, "error %v\n", err)
			os.Exit(2)
		}
		if err := s.Sync(); err != nil {
			fmt.Fprintf(os.Stdout, "error %v\n", err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: the line is in the pipe when this
		// returns.
		fmt.Fprintf(os.Stdout, "synced %d\n", i)
	}
}

// TestCrash runs TestCrashChild in a subprocess, kills it with SIGKILL while
// it writes, and checks that every step the child reported synced is in the
// store when it is reopened.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess crash test skipped in -short mode")
	}
	for round, killAfter := range []int{1, 150, 1500} {
		t.Run(fmt.Sprintf("kill-after-%d", killAfter), func(t *testing.T) {
			dir := t.TempDir()
			if round > 0 {
				// Start from a store that already holds data and was
				// reopened, not only from a fresh one.
				s := mustOpen(t, dir, Options{})
				if _, err := s.Apply([]store.Record{rec("before", "x", 1)}); err != nil {
					t.Fatal(err)
				}
				closeStore(t, s)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			synced, killed := -1, false
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if msg, ok := strings.CutPrefix(line, "error "); ok {
					t.Errorf("child failed: %s", msg)
					continue
				}
				n, ok := strings.CutPrefix(line, "synced ")
				if !ok {
					continue // the test framework's own output
				}
				i, err := strconv.Atoi(n)
				if err != nil || i != synced+1 {
					t.Fatalf("child printed %q after step %d", line, synced)
				}
				synced = i
				if !killed && synced+1 >= killAfter {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatalf("kill child: %v", err)
					}
					killed = true
				}
			}
			// Lines already in the pipe when the kill landed were read
			// above: those steps were synced too.
			err = cmd.Wait()
			if !killed {
				t.Fatalf("child exited before it was killed (%v); stderr:\n%s", err, stderr.String())
			}
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child ended with %v, not by SIGKILL; stderr:\n%s", err, stderr.String())
			}
			t.Logf("child reported %d synced steps before it died", synced+1)

			s := mustOpen(t, dir, Options{})
			defer closeStore(t, s)
			for i := 0; i <= synced; i++ {
				for _, want := range crashRecords(i)[:1+i%4] {
					got, ok, err := s.Get(want.Key)
					if err != nil || !ok || !bytes.Equal(got.Value, want.Value) || got.Version != want.Version {
						t.Fatalf("step %d record %q after the crash: ok %v, err %v, version %v", i, want.Key, ok, err, got.Version)
					}
				}
			}
			latest, ok, err := s.Get([]byte("latest"))
			if err != nil || !ok {
				t.Fatalf("Get(latest) after crash: %v, %v", ok, err)
			}
			if n, _ := strconv.Atoi(string(latest.Value)); n < synced {
				t.Fatalf("latest = %d after the crash, but step %d was synced", n, synced)
			}
			step, ok, err := s.GetMeta([]byte("step"))
			if n, _ := strconv.Atoi(string(step)); err != nil || !ok || n < synced {
				t.Fatalf("meta step = %q (%v, %v) after the crash, but step %d was synced", step, ok, err, synced)
			}
			if round > 0 {
				if _, ok, err := s.Get([]byte("before")); err != nil || !ok {
					t.Fatalf("record written before the child ran is gone: %v, %v", ok, err)
				}
			}
			checkRevisionsAfterCrash(t, s, round > 0, synced)
		})
	}
}

// checkRevisionsAfterCrash checks the change log a crashed child left: the
// revision is at the end of a whole step, no earlier than the last one
// synced, and every change in the log is the record applied at that
// revision.
func checkRevisionsAfterCrash(t *testing.T, s *Store, before bool, synced int) {
	t.Helper()
	var byRev []store.Record // byRev[r-1] is the change at revision r
	if before {
		byRev = append(byRev, rec("before", "x", 1))
	}
	ends := map[uint64]int{} // revision at the end of step i → i
	rev := s.Revision()
	for i := 0; uint64(len(byRev)) < rev; i++ {
		byRev = append(byRev, crashRecords(i)...)
		ends[uint64(len(byRev))] = i
	}
	if i, ok := ends[rev]; !ok || i < synced {
		t.Fatalf("revision %d after the crash is not the end of a step at or after the last synced one, %d", rev, synced)
	}
	st := s.ChangeLog()
	n := 0
	err := s.Changes(st.First-1, func(r store.Record) bool {
		want := byRev[r.Revision-1]
		if !bytes.Equal(r.Key, want.Key) || !bytes.Equal(r.Value, want.Value) || r.Version != want.Version {
			t.Fatalf("change %d is %q at %v, want %q at %v", r.Revision, r.Key, r.Version, want.Key, want.Version)
		}
		n++
		return true
	})
	if err != nil || n != st.Entries || st.First == 0 {
		t.Fatalf("change log after the crash: %d of %d entries read from %d: %v", n, st.Entries, st.First, err)
	}
}
