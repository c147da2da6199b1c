package llmroute

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// benchBody returns a chat completions body whose user message is about
// size bytes long.
func benchBody(size int) []byte {
	msg := strings.Repeat("The quick brown fox jumps over the lazy dog. ", size/45+1)[:size]
	return fmt.Appendf(nil, `{"model":"small","stream":true,"max_tokens":256,"temperature":0.7,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":%q}]}`, msg)
}

func BenchmarkParseRequest(b *testing.B) {
	for _, size := range []int{200, 4 << 10, 64 << 10} {
		body := benchBody(size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseRequest(body, "model", defaultMaxDepth); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRewriteBody(b *testing.B) {
	for _, size := range []int{200, 4 << 10, 64 << 10} {
		body := benchBody(size)
		params := map[string]json.RawMessage{"temperature": json.RawMessage("0.2")}
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rewriteBody(body, "model", "mock-small", false, params); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEventStream measures the pass-through of a streamed answer:
// per event, the attempt writer checks the JSON and looks for usage and
// the terminator.
func BenchmarkEventStream(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	aw := newAttemptWriter(context.Background(), discardWriter{http.Header{}})
	aw.header.Set("Content-Type", "text/event-stream")
	aw.WriteHeader(http.StatusOK)
	for b.Loop() {
		if _, err := aw.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (d discardWriter) WriteHeader(int)             {}

// BenchmarkAdmission is the cost of the limits on one attempt: reserving
// on a model with one limit (rpm) and settling, in memory.
func BenchmarkAdmission(b *testing.B) {
	h := mustLoadHandler(b, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"], "rpm": 1000000000000}]
	}`)
	req := &strategies.Request{Model: "m", Endpoint: "/chat/completions", MaxTokens: 256, PromptTokens: 100}
	p := &plan{route: "m"}
	c := newCandidate(h.models["m"], h.models["m"].serving[0], nil)
	b.ReportAllocs()
	for b.Loop() {
		res, d := h.admit(context.Background(), req, p, &c, time.Now())
		if d != nil || res == nil {
			b.Fatal("not admitted")
		}
		h.settle(res, &c, outcomeDone, nil)
	}
}
