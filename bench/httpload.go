package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPLoadOptions configure HTTPLoad: closed-loop clients on keep-alive
// connections, each sending its next request when the last one is answered
// (the shape of wrk and of the measurements).
type HTTPLoadOptions struct {
	// URL is the server's base URL (http://host:port); requests go to
	// URL/v1/kv/<key>, the agent's key-value route, which the twin serves
	// too.
	URL string
	// Op is "put" or "get".
	Op string
	// Clients is the number of concurrent clients, one connection each.
	Clients int
	// Duration is how long the measured phase lasts.
	Duration time.Duration
	// Warmup runs before the measured phase, with the same clients.
	Warmup time.Duration
	// ValueSize is the size of each PUT body (raw bytes,
	// application/octet-stream) and of the values GET reads.
	ValueSize int
	// Keys is how many distinct keys GET reads (written before it starts)
	// and PUT cycles through per client (0: every PUT a new key).
	Keys int
	// PID, when not zero, is the server's process id: its CPU time over the
	// measured phase is read from /proc (Linux) and reported per request.
	PID int
	// Seed makes the GET key order repeatable.
	Seed uint64
}

// HTTPLoadResult is one measured phase. The JSON names are relied on by
// scripts/http-bench.sh.
type HTTPLoadResult struct {
	Op        string  `json:"op"`
	Clients   int     `json:"clients"`
	ValueSize int     `json:"value_size"`
	Seconds   float64 `json:"seconds"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	PerSecond float64 `json:"requests_per_second"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	// ServerCPUSeconds is the server's user+system CPU time over the
	// measured phase (0 without PID), and ServerCPUMicrosPerRequest that
	// divided by the requests answered.
	ServerCPUSeconds          float64 `json:"server_cpu_seconds,omitempty"`
	ServerCPUMicrosPerRequest float64 `json:"server_cpu_us_per_request,omitempty"`
	// FirstError is the first failure seen, for the operator.
	FirstError string `json:"first_error,omitempty"`
}

// HTTPLoad runs a closed-loop load against opts.URL and reports throughput,
// latency percentiles and, with PID, the server's CPU per request.
func HTTPLoad(ctx context.Context, opts HTTPLoadOptions) (*HTTPLoadResult, error) {
	if opts.Op != "put" && opts.Op != "get" {
		return nil, fmt.Errorf("bench http: op must be put or get, not %q", opts.Op)
	}
	if opts.Clients < 1 || opts.Duration <= 0 || opts.ValueSize < 0 {
		return nil, errors.New("bench http: clients must be at least 1, duration positive, value size not negative")
	}
	base := strings.TrimRight(opts.URL, "/")
	tr := &http.Transport{
		MaxIdleConns:        opts.Clients,
		MaxIdleConnsPerHost: opts.Clients,
		MaxConnsPerHost:     opts.Clients,
		IdleConnTimeout:     time.Minute,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	value := bytes.Repeat([]byte{'v'}, opts.ValueSize)
	keys := opts.Keys
	if opts.Op == "get" {
		if keys < 1 {
			keys = 1000
		}
		if err := preload(ctx, client, base, keys, value, opts.Clients); err != nil {
			return nil, err
		}
	}
	type clientStats struct {
		lat  []time.Duration
		n    int64
		errs int64
		err  error
	}
	stats := make([]clientStats, opts.Clients)
	var measuring atomic.Bool
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for c := range opts.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[c]
			rng := rand.New(rand.NewPCG(opts.Seed, uint64(c)))
			for i := 0; runCtx.Err() == nil; i++ {
				var req *http.Request
				var err error
				if opts.Op == "put" {
					k := i
					if keys > 0 {
						k = i % keys
					}
					req, err = http.NewRequestWithContext(runCtx, http.MethodPut,
						base+"/v1/kv/bench-"+strconv.Itoa(c)+"-"+strconv.Itoa(k), bytes.NewReader(value))
					if err == nil {
						req.Header.Set("Content-Type", "application/octet-stream")
					}
				} else {
					req, err = http.NewRequestWithContext(runCtx, http.MethodGet,
						base+"/v1/kv/load-"+strconv.Itoa(rng.IntN(keys)), nil)
					if err == nil {
						req.Header.Set("Accept", "application/octet-stream")
					}
				}
				if err != nil {
					st.err = err
					return
				}
				start := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
					}
				}
				if runCtx.Err() != nil {
					return
				}
				if !measuring.Load() {
					continue
				}
				if err != nil {
					st.errs++
					if st.err == nil {
						st.err = err
					}
					continue
				}
				st.n++
				st.lat = append(st.lat, time.Since(start))
			}
		}()
	}
	if err := sleepCtx(ctx, opts.Warmup); err != nil {
		return nil, err
	}
	cpu0, _ := processCPU(opts.PID)
	start := time.Now()
	measuring.Store(true)
	if err := sleepCtx(ctx, opts.Duration); err != nil {
		return nil, err
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1, cpuErr := processCPU(opts.PID)
	cancel()
	wg.Wait()

	res := &HTTPLoadResult{Op: opts.Op, Clients: opts.Clients, ValueSize: opts.ValueSize, Seconds: elapsed.Seconds()}
	var all []time.Duration
	for _, st := range stats {
		res.Requests += st.n
		res.Errors += st.errs
		all = append(all, st.lat...)
		if st.err != nil && res.FirstError == "" {
			res.FirstError = st.err.Error()
		}
	}
	res.PerSecond = float64(res.Requests) / elapsed.Seconds()
	slices.Sort(all)
	res.P50Ms, res.P99Ms, res.P999Ms = quantileMs(all, 0.5), quantileMs(all, 0.99), quantileMs(all, 0.999)
	if opts.PID != 0 && cpuErr == nil {
		res.ServerCPUSeconds = (cpu1 - cpu0).Seconds()
		if res.Requests > 0 {
			res.ServerCPUMicrosPerRequest = res.ServerCPUSeconds * 1e6 / float64(res.Requests)
		}
	}
	return res, nil
}

// preload writes the keys GET reads, with as many clients as the load uses.
func preload(ctx context.Context, client *http.Client, base string, keys int, value []byte, clients int) error {
	var next atomic.Int64
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= int64(keys) {
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPut,
					base+"/v1/kv/load-"+strconv.FormatInt(k, 10), bytes.NewReader(value))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Content-Type", "application/octet-stream")
				resp, err := client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("bench http: preloading: %w", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("bench http: preloading key %d: %s", k, resp.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// processCPU reads a process's user+system CPU time from /proc/PID/stat.
func processCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("bench http: server CPU: %w", err)
	}
	// The command name (field 2) may hold spaces: fields count from its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bench http: server CPU: malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("bench http: server CPU: short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bench http: server CPU: malformed /proc stat")
	}
	// USER_HZ is 100 on Linux for every architecture Go supports.
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// Twin is the trivial HTTP key-value handler the agent's API is measured
// against: the same route and methods on a mutex-guarded map, with no
// durability, replication, authorisation or metrics. Its throughput under
// the same load generator is the ceiling of what net/http gives on this
// machine.
type Twin struct {
	mu sync.RWMutex
	m  map[string][]byte
}

// NewTwin returns an empty Twin.
func NewTwin() *Twin { return &Twin{m: map[string][]byte{}} }

// ServeHTTP answers PUT and GET on /v1/kv/<key>.
func (t *Twin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	if !ok || key == "" {
		http.Error(w, "no such endpoint", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t.mu.Lock()
		t.m[key] = b
		t.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"key_text":`+strconv.Quote(key)+`}`)
	case http.MethodGet:
		t.mu.RLock()
		v, ok := t.m[key]
		t.mu.RUnlock()
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(v)
	default:
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
