package llmroute

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestBodyLeaseCounts(t *testing.T) {
	if leaseBody(32<<10-1) != nil || leaseBody(1<<24+1) != nil {
		t.Fatal("a body outside the pooled sizes got a lease")
	}
	l := leaseBody(100 << 10)
	if l == nil || len(l.buf) != 104<<10 {
		t.Fatalf("lease of 100 KiB: %v", l)
	}
	sb := wholeBody(l.buf[:100<<10])
	up, _ := http.NewRequest(http.MethodPost, "http://upstream.example/", nil)
	sent := sb.setOn(up, l)
	replay, err := up.GetBody()
	if err != nil {
		t.Fatal(err)
	}
	if got := l.refs.Load(); got != 2 {
		t.Fatalf("held %d times, want 2 (the handler, the attempt's body)", got)
	}
	// The transport's Close of a reader changes nothing: the attempt's
	// end does.
	_ = replay.Close()
	_ = up.Body.Close()
	if n, err := replay.Read(make([]byte, 8)); n != 8 || err != nil {
		t.Fatalf("a body the attempt still holds read %d bytes, %v", n, err)
	}
	sent.close()
	sent.close() // a second close is no second release
	if got := l.refs.Load(); got != 1 {
		t.Fatalf("held %d times after the attempt ended, want 1", got)
	}
	for _, r := range []io.Reader{up.Body, replay} {
		if n, err := r.Read(make([]byte, 8)); n != 0 || err == nil {
			t.Fatalf("a body read %d bytes after its attempt ended, %v", n, err)
		}
	}
	before := leased.Load()
	l.release()
	if leased.Load() != before-1 {
		t.Fatal("the last release did not return the buffer")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a release past the count did not panic")
			}
		}()
		l.release()
	}()
}

// TestBodyClass: every pooled size has one class, whose buffers hold it
// with at most an eighth to spare, and a class's buffers all have one
// size.
func TestBodyClass(t *testing.T) {
	sizes := make(map[int]int)
	last := -1
	for n := 1 << minPooledShift; n <= 1<<maxPooledShift; n += 1 + n/97 {
		class, size := bodyClass(n)
		if size < n || size > n+n/8 || class < 0 || class >= len(bodyPools) || class < last {
			t.Fatalf("%d bytes: class %d (after %d), size %d", n, class, last, size)
		}
		if s, ok := sizes[class]; ok && s != size {
			t.Fatalf("class %d holds %d and %d bytes", class, s, size)
		}
		sizes[class], last = size, class
	}
	for _, n := range []int{1 << minPooledShift, 1 << maxPooledShift} {
		if class, size := bodyClass(n); size != n {
			t.Errorf("%d bytes: class %d of %d bytes", n, class, size)
		}
	}
	if class, _ := bodyClass(1 << maxPooledShift); class != len(bodyPools)-1 {
		t.Errorf("the largest size is in class %d of %d", class, len(bodyPools))
	}
}

func TestReadAllPooled(t *testing.T) {
	body := []byte(strings.Repeat("0123456789", 10<<10)) // 100 KiB
	for _, tc := range []struct {
		name   string
		length int64
		pooled bool
	}{
		{"announced", int64(len(body)), true},
		{"not announced", -1, true}, // joined into a pooled buffer
		{"longer than announced", 40 << 10, true},
		{"announced small", 1000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := leased.Load()
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			r.ContentLength = tc.length
			got, lease, err := readAll(r, 1<<20)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
			if (lease != nil) != tc.pooled {
				t.Fatalf("pooled: %v, want %v", lease != nil, tc.pooled)
			}
			if cap(got) != len(got) {
				t.Errorf("capacity %d past the body's %d bytes: an append would write into the pool's buffer", cap(got), len(got))
			}
			if n := leased.Load() - before; n != 1 {
				t.Errorf("%d buffers out after the read, want 1 (a first buffer that was not enough goes back)", n)
			}
			lease.release()
			if leased.Load() != before {
				t.Error("the buffer did not go back")
			}
		})
	}
	before := leased.Load()
	r := httptest.NewRequest("POST", "/", &failingReader{bytes.NewReader(body), io.ErrUnexpectedEOF})
	r.ContentLength = int64(len(body)) + 10
	if _, lease, err := readAll(r, 1<<20); err == nil || lease != nil || leased.Load() != before {
		t.Errorf("a broken body: error %v, lease %v, %d buffers out", err, lease, leased.Load()-before)
	}
}

// TestPooledBodiesStayIntact sends many large bodies at once through
// fallbacks and hedges whose upstreams answer before reading the body
// (then read what still comes), read part of it, or lose a race while
// reading it: every upstream that reads a whole body must get exactly
// the client's, and every pooled buffer must be back once the requests
// are answered. (Whether a transport is still writing a body when its
// attempt ends depends on the sockets' buffers; that reads fail from
// then on is TestBodyLeaseCounts's.)
func TestPooledBodiesStayIntact(t *testing.T) {
	var corrupt, checked atomic.Int64
	check := func(r *http.Request) {
		var req struct {
			User     string `json:"user"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return // the gateway gave up on this call
		}
		if err := json.Unmarshal(b, &req); err != nil || len(req.Messages) != 1 {
			corrupt.Add(1)
			return
		}
		if sum := sha256.Sum256([]byte(req.Messages[0].Content)); hex.EncodeToString(sum[:]) != req.User {
			corrupt.Add(1)
			return
		}
		checked.Add(1)
	}
	early := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The answer first, then the body: what arrives of it after the
		// attempt ended must still be the client's, or nothing.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"message":"busy"}}`)
		w.(http.Flusher).Flush()
		check(r)
	}))
	partial := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.CopyN(io.Discard, r.Body, 10<<10)
		http.Error(w, `{"error":{"message":"bad gateway"}}`, http.StatusBadGateway)
	}))
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		check(r)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, okChat)
	}))
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		check(r)
		<-r.Context().Done() // until the hedge wins and this call is cancelled
	}))
	ups := []*httptest.Server{early, partial, good, slow}
	before := leased.Load()

	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	h := mustLoadHandler(t, `{
		"providers": [
			{"name": "early", "proxy": `+gatewayProxy(addr(early))+`},
			{"name": "partial", "proxy": `+gatewayProxy(addr(partial))+`},
			{"name": "good", "proxy": `+gatewayProxy(addr(good))+`},
			{"name": "slow", "proxy": `+gatewayProxy(addr(slow))+`}],
		"models": [
			{"name": "e", "providers": ["early"]},
			{"name": "p", "providers": ["partial"]},
			{"name": "g", "providers": ["good"]},
			{"name": "s", "providers": ["slow"]}],
		"routes": [
			{"name": "fallback", "targets": [{"model": "e"}, {"model": "p"}, {"model": "g"}]},
			{"name": "hedged", "targets": [{"model": "s"}, {"model": "g"}], "hedge": {"delay": "1ms", "budget": 1}}]
	}`)

	const requests, workers = 120, 6
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := w; i < requests; i += workers {
				route := []string{"fallback", "hedged"}[i%2]
				body := pooledTestBody(rng, route, 40<<10+rng.IntN(200<<10))
				rec := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "http://gateway.example/v1/chat/completions", bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
				if err := h.ServeHTTP(rec, r, nil); err != nil || rec.Code != http.StatusOK {
					failed.Add(1)
					t.Errorf("%s: status %d, error %v: %s", route, rec.Code, err, rec.Body.Bytes())
				}
			}
		})
	}
	wg.Wait()
	for _, s := range ups {
		s.CloseClientConnections()
		s.Close()
	}
	if corrupt.Load() > 0 {
		t.Fatalf("%d upstream calls got a body that was not the client's", corrupt.Load())
	}
	if checked.Load() < requests {
		t.Fatalf("only %d bodies were checked whole, for %d requests", checked.Load(), requests)
	}
	// Each attempt's end closed its body, whatever the transport did.
	if n := leased.Load() - before; n != 0 {
		t.Errorf("%d pooled buffers never came back", n)
	}
}

// pooledTestBody is a chat request of about size bytes whose user field
// is the SHA-256 of its one message's content.
func pooledTestBody(rng *rand.Rand, model string, size int) []byte {
	const letters = "abcdefghijklmnopqrstuvwxyz "
	content := make([]byte, size)
	for i := range content {
		content[i] = letters[rng.IntN(len(letters))]
	}
	sum := sha256.Sum256(content)
	return fmt.Appendf(nil, `{"model":%q,"user":%q,"messages":[{"role":"user","content":%q}]}`, model, hex.EncodeToString(sum[:]), content)
}
