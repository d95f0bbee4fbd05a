package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/bench"
)

// BenchmarkHTTP runs the load generator of `hearsay bench http` against an
// agent served by Run (its real listener, limits and handler) on a durable
// data directory, and against the trivial twin, in one process: the
// agent/twin ratio is what scripts/http-bench.sh measures across processes.
// Profile the agent's share with -cpuprofile.
//
//	go test -run '^$' -bench HTTP -benchtime 1x ./agent -args -test.cpuprofile=/tmp/http.prof
func BenchmarkHTTP(b *testing.B) {
	for _, target := range []string{"agent", "twin"} {
		for _, op := range []string{"put", "get"} {
			b.Run(target+"/"+op, func(b *testing.B) {
				url := benchTarget(b, target)
				var res *bench.HTTPLoadResult
				for b.Loop() {
					var err error
					res, err = bench.HTTPLoad(b.Context(), bench.HTTPLoadOptions{
						URL: url, Op: op, Clients: 64, Duration: 3 * time.Second, Warmup: time.Second,
						ValueSize: 100, Keys: 1000, Seed: 1,
					})
					if err != nil {
						b.Fatal(err)
					}
					if res.Errors > 0 {
						b.Fatalf("%d errors, first: %s", res.Errors, res.FirstError)
					}
				}
				b.ReportMetric(res.PerSecond, "req/s")
				b.ReportMetric(res.P99Ms, "p99-ms")
			})
		}
	}
}

func benchTarget(b *testing.B, target string) string {
	b.Helper()
	if target == "twin" {
		srv := &http.Server{Handler: bench.NewTwin(), ReadHeaderTimeout: 10 * time.Second}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { _ = srv.Close() })
		return "http://" + ln.Addr().String()
	}
	cfg := DefaultConfig()
	cfg.Name = "bench"
	cfg.DataDir = b.TempDir()
	cfg.Bind = "127.0.0.1:0"
	cfg.HTTP = "127.0.0.1:0"
	cfg.BuildVersion = "bench"
	a, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	waitFor(b, 10*time.Second, "agent ready", func() bool { return a.Node().Status().Ready })
	return "http://" + a.HTTPAddr()
}

// BenchmarkHandler measures the agent's handler alone (no sockets) per GET
// and PUT of a 100-byte value, beside the trivial twin's: allocations per
// request are what the machine's load does not change.
//
//	go test -run '^$' -bench Handler -benchmem ./agent
func BenchmarkHandler(b *testing.B) {
	value := bytes.Repeat([]byte{'v'}, 100)
	for _, target := range []string{"agent", "twin"} {
		var h http.Handler
		if target == "twin" {
			h = bench.NewTwin()
		} else {
			cfg := DefaultConfig()
			cfg.Name = "bench"
			cfg.DataDir = b.TempDir()
			cfg.Bind = "127.0.0.1:0"
			cfg.HTTP = ""
			cfg.Logger = slog.New(slog.DiscardHandler)
			a, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = a.Close() })
			waitFor(b, 10*time.Second, "agent ready", func() bool { return a.Node().Status().Ready })
			h = a.Handler()
		}
		serve := func(b *testing.B, method, path string, body []byte) {
			var rd io.Reader = http.NoBody
			if body != nil {
				rd = bytes.NewReader(body)
			}
			req := httptest.NewRequest(method, path, rd)
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Accept", "application/octet-stream")
			w := &discardWriter{header: http.Header{}}
			h.ServeHTTP(w, req)
			if w.code != 0 && w.code != http.StatusOK {
				b.Fatalf("%s %s: %d", method, path, w.code)
			}
		}
		b.Run(target+"/get", func(b *testing.B) {
			serve(b, "PUT", "/v1/kv/key", value)
			for b.Loop() {
				serve(b, "GET", "/v1/kv/key", nil)
			}
		})
		b.Run(target+"/put", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					serve(b, "PUT", "/v1/kv/key", value)
				}
			})
		})
	}
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	code   int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(b), nil
}
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
