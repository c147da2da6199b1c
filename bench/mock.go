package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// The mock upstream: a minimal OpenAI chat completions server, fast enough
// that it is not the bottleneck. It is run as its own process (see
// [MaybeServeMock]) so that its CPU time is not counted against the server
// under test, and it is measured itself as arm D.

// MockTag is the value of the X-Bench-Mock response header, by which the
// harness checks that an answer came from its own mock (Caddy binds with
// SO_REUSEPORT, so a stray listener on the same port would not fail loudly).
const MockTag = "llmbench"

// HeaderMock is the response header every mock answer carries.
const HeaderMock = "X-Bench-Mock"

// The environment variables that turn a harness process (the llmbench
// command or a test binary) into the mock.
const (
	envMockRole   = "LLMBENCH_ROLE"        // "mock"
	envMockChunks = "LLMBENCH_MOCK_CHUNKS" // content chunks per stream
	envMockGap    = "LLMBENCH_MOCK_GAP"    // pause between stream chunks (Go duration)
)

// MockConfig shapes the mock's answers.
type MockConfig struct {
	// Content chunks of a streamed answer; the last carries finish_reason
	// and usage, and "data: [DONE]" follows.
	Chunks int
	// Pause before every chunk but the first: the token pace. The first
	// chunk goes out with the response headers.
	Gap time.Duration
}

const nonStreamAnswer = `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-small",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"This is a mock answer from the llmbench upstream."},"logprobs":null,"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":256,"completion_tokens":11,"total_tokens":267}}`

const (
	chunkHead = `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-small","choices":[{"index":0,"delta":{"content":"tok`
	chunkTail = ` "},"finish_reason":null}]}` + "\n\n"
	lastTail  = ` "},"finish_reason":"stop"}],"usage":{"prompt_tokens":256,"completion_tokens":%d,"total_tokens":%d}}` + "\n\n"
	doneEvent = "data: [DONE]\n\n"
)

var streamMarker = []byte(`"stream":true`)

type mock struct {
	cfg    MockConfig
	chunks [][]byte // pre-rendered events
	bufs   sync.Pool
}

// NewMockHandler returns the mock's handler. Every request (any method or
// path) is answered as a chat completion; a body holding "stream":true gets
// an SSE stream of cfg.Chunks chunks.
func NewMockHandler(cfg MockConfig) http.Handler {
	if cfg.Chunks < 1 {
		cfg.Chunks = 1
	}
	m := &mock{cfg: cfg}
	m.bufs.New = func() any { return new(bytes.Buffer) }
	for i := range cfg.Chunks {
		tail := chunkTail
		if i == cfg.Chunks-1 {
			tail = fmt.Sprintf(lastTail, cfg.Chunks, 256+cfg.Chunks)
		}
		m.chunks = append(m.chunks, []byte(chunkHead+strconv.Itoa(i)+tail))
	}
	return m
}

func (m *mock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := m.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := io.Copy(buf, io.LimitReader(r.Body, 16<<20))
	stream := bytes.Contains(buf.Bytes(), streamMarker)
	m.bufs.Put(buf)
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set(HeaderMock, MockTag)
	if !stream {
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(nonStreamAnswer)))
		io.WriteString(w, nonStreamAnswer)
		return
	}
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	ctx := r.Context()
	for i, c := range m.chunks {
		if i > 0 && m.cfg.Gap > 0 {
			t := time.NewTimer(m.cfg.Gap)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if _, err := w.Write(c); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	io.WriteString(w, doneEvent)
	if flusher != nil {
		flusher.Flush()
	}
}

// MaybeServeMock turns this process into the mock when the environment
// says so (the harness starts the mock by running its own executable with
// that environment): it serves on a loopback port of its own choosing,
// prints "listening <addr>" on stdout, and exits when stdin closes, that is
// when the harness goes away. Otherwise it returns at once. Call it first
// thing in main or TestMain.
func MaybeServeMock() {
	if os.Getenv(envMockRole) != "mock" {
		return
	}
	cfg := MockConfig{Chunks: 64}
	if v, err := strconv.Atoi(os.Getenv(envMockChunks)); err == nil {
		cfg.Chunks = v
	}
	if v, err := time.ParseDuration(os.Getenv(envMockGap)); err == nil {
		cfg.Gap = v
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mock:", err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	srv := &http.Server{Handler: NewMockHandler(cfg), ReadHeaderTimeout: 10 * time.Second}
	err = srv.Serve(ln)
	fmt.Fprintln(os.Stderr, "mock:", err)
	os.Exit(1)
}
