package e2e

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

// hygieneSetup is version v of a configuration with two llm_route
// sites, discovering providers (a goroutine each per handler), limits
// (the shared counter store), client keys and a model whose name
// changes with every version (a new pair each time).
func hygieneSetup(v int) setup {
	mocks := defaultMocks()
	mocks[0].Lines = []string{"models gpt-h1 gpt-h2"}
	return setup{
		Mocks: mocks,
		Route: fmt.Sprintf(`
		provider alpha http://127.0.0.1:%d {
			models auto
			models_refresh 1s
		}
		provider beta http://127.0.0.1:%d
		model chat alpha beta {
			upstream_name mock-chat
			rpm 1000
		}
		model version-%d beta
		key team {
			secret %s
			daily_requests 1000
		}
`, portAlpha, portBeta, v, clientKey),
		Extra: fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	llm_route {
		name second
		provider alpha http://127.0.0.1:%d {
			models auto
		}
		model other alpha
	}
}
`, portExtra1, portAlpha),
	}
}

// footprint is what a configuration holds in the process.
type footprint struct {
	goroutines, pairs, handlers int
	heap                        uint64
}

func measure(t *testing.T) footprint {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	o, _ := adminState(t)
	return footprint{runtime.NumGoroutine(), len(upstreams.Pairs()), len(o.Handlers), ms.HeapAlloc}
}

// 200 config reloads leave no goroutine, pair, handler or memory behind
// beyond a small bound: discovery's refresh loops stop with their
// configuration, pairs and lists are released, the admin API forgets
// the old handlers.
func TestReloadHygiene(t *testing.T) {
	start(t, hygieneSetup(0))
	c := oaClient(t)
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt)); err != nil {
		t.Fatal(err)
	}
	// One client without keep-alive for the loads: idle connections
	// would count as goroutines.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	load := func(v int) {
		status, body, err := postLoad(ctxT(t), hc, hygieneSetup(v).caddyfile())
		if err != nil {
			t.Fatalf("load %d: %v", v, err)
		}
		if status != http.StatusOK {
			t.Fatalf("load %d: %d %s", v, status, body)
		}
	}
	load(1)
	before := measure(t)
	if before.handlers != 2 {
		t.Fatalf("%d handlers in the admin API, want 2", before.handlers)
	}
	for v := 2; v <= 201; v++ {
		load(v)
	}
	// Settle: old servers close their connections and listeners after
	// the load returns; poll until the goroutines are back in bound.
	const slack = 10
	deadline := time.Now().Add(60 * time.Second)
	after := measure(t)
	for after.goroutines > before.goroutines+slack && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		after = measure(t)
	}
	t.Logf("before %+v, after 200 reloads %+v", before, after)
	if after.goroutines > before.goroutines+slack {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after 200 reloads\n%s", before.goroutines, after.goroutines, buf[:runtime.Stack(buf, true)])
	}
	if after.pairs != before.pairs {
		t.Errorf("pairs: %d before, %d after 200 reloads", before.pairs, after.pairs)
	}
	if after.handlers != before.handlers {
		t.Errorf("handlers in the admin API: %d before, %d after", before.handlers, after.handlers)
	}
	if after.heap > before.heap+16<<20 {
		t.Errorf("heap: %d bytes before, %d after 200 reloads", before.heap, after.heap)
	}
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("gpt-h2", prompt)); err != nil {
		t.Fatalf("a discovered model after the reloads: %v", err)
	}
}
