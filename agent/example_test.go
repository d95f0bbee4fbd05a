package agent_test

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/hearsaydb/hearsay/agent"
)

// An agent serving its API from a server of your own; call Run instead to
// have it listen on Config.HTTP and stop gracefully.
func ExampleNew() {
	cfg := agent.DefaultConfig()
	cfg.Name = "example"
	cfg.InMemory = true      // or DataDir: one of them must be chosen
	cfg.Bind = "127.0.0.1:0" // any free gossip port
	cfg.HTTP = ""            // no listener: we serve Handler below
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/kv/greeting", strings.NewReader("hello"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()

	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/v1/kv/greeting", nil)
	req.Header.Set("Accept", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	value, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(value))
	// Output: 200 OK hello
}
