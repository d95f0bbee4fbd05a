package cluster_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWatchResumesAcrossAgentRestart runs `hearsay watch` as a process
// while its agent is killed with SIGKILL and restarted from its data
// directory, with writes before the watch, while it runs, while the agent
// is down or starting, and after. The watch reconnects and resumes from the
// last event id: its output holds every acknowledged write exactly once,
// in order per key, and nothing twice.
func TestWatchResumesAcrossAgentRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	a := newAgent(t, "w1")
	a.start()

	// What the writer did: every write's value is unique ("key#n"), and
	// only writes answered 200 count as acknowledged.
	var mu sync.Mutex
	var acked []string // "key=value", in acknowledgement order
	failed := 0
	write := func(n int) bool {
		key := fmt.Sprintf("w/%d", n%3)
		value := fmt.Sprintf("%s#%d", key, n)
		_, code, err := a.request("PUT", "/v1/kv/"+key, []byte(value))
		mu.Lock()
		defer mu.Unlock()
		if err == nil && code == 200 {
			acked = append(acked, key+"="+value)
			return true
		}
		failed++
		return false
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for n := range 10 { // before the watch: replayed from the change log
		write(n)
	}

	// The watch process, its output lines collected as they come.
	watch := exec.Command(binary, "watch", "--prefix", "w/", "--json", "--addr", a.http)
	watch.Env = os.Environ()
	var stderr bytes.Buffer
	watch.Stderr = &lockedWriter{w: &stderr}
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	var outMu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			outMu.Lock()
			lines = append(lines, sc.Text())
			outMu.Unlock()
		}
		watchDone <- watch.Wait()
	}()
	t.Cleanup(func() {
		_ = watch.Process.Kill()
		if t.Failed() {
			logMu <- struct{}{}
			t.Logf("--- watch stderr ---\n%s", stderr.String())
			<-logMu
		}
	})
	printed := func(want string) func() bool {
		return func() bool {
			outMu.Lock()
			defer outMu.Unlock()
			for _, l := range lines {
				if strings.Contains(l, base64.StdEncoding.EncodeToString([]byte(want))) {
					return true
				}
			}
			return false
		}
	}

	// A writer that runs through the kill and the restart.
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for n := 10; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if !write(n) {
				// The agent is down or starting: pace the retries.
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
	}()
	a.waitFor(30*time.Second, "writes while the watch runs", func() bool { return ackedCount() >= 40 })
	mu.Lock()
	last := acked[len(acked)-1]
	mu.Unlock()
	a.waitFor(30*time.Second, "the watch printing them", printed(last[strings.Index(last, "=")+1:]))

	a.kill() // mid-stream: the writer keeps writing, and fails
	down := ackedCount()
	a.start()
	a.waitFor(60*time.Second, "writes after the restart", func() bool { return ackedCount() >= down+40 })
	close(stop)
	<-writerDone
	a.put("w/end", "end")
	a.waitFor(60*time.Second, "the watch printing the last write", printed("end"))
	if err := watch.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-watchDone:
		if err != nil {
			t.Fatalf("watch exited with %v after SIGINT, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not exit within 20s of SIGINT")
	}

	// Every line is a change (no snapshot), in revision order, printed
	// once: its value is unique.
	type event struct {
		KeyText  string `json:"key_text"`
		Value    string `json:"value"`
		Revision uint64 `json:"revision"`
		Snapshot bool   `json:"snapshot"`
	}
	seen := map[string]int{} // "key=value" → position in the output
	perKey := map[string][]int{}
	var prevRev uint64
	for i, l := range lines {
		var ev event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("watch line %d %q: %v", i, l, err)
		}
		v, err := base64.StdEncoding.DecodeString(ev.Value)
		if err != nil || ev.Snapshot || ev.Revision <= prevRev {
			t.Fatalf("watch line %d %q: want a change with a revision above %d", i, l, prevRev)
		}
		prevRev = ev.Revision
		kv := ev.KeyText + "=" + string(v)
		if j, dup := seen[kv]; dup {
			t.Fatalf("watch printed %s twice: lines %d and %d", kv, j, i)
		}
		seen[kv] = i
		if ev.KeyText != "w/end" {
			n, _ := strconv.Atoi(string(v)[strings.Index(string(v), "#")+1:])
			perKey[ev.KeyText] = append(perKey[ev.KeyText], n)
		}
	}
	for k, ns := range perKey {
		for i := 1; i < len(ns); i++ {
			if ns[i] <= ns[i-1] {
				t.Fatalf("watch printed %s's writes out of order: #%d after #%d", k, ns[i], ns[i-1])
			}
		}
	}
	for _, kv := range append(acked, "w/end=end") {
		if _, ok := seen[kv]; !ok {
			t.Fatalf("acknowledged write %s missing from the watch output (%d lines)", kv, len(lines))
		}
	}
	if !strings.Contains(stderr.String(), "reconnected") {
		t.Fatalf("the watch never reconnected; stderr:\n%s", stderr.String())
	}
	t.Logf("%d acknowledged writes (%d before the restart), %d failed while the agent was down, %d lines printed", len(acked), down, failed, len(lines))
}
