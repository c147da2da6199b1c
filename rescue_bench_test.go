package llmroute

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// stampWriter notes when the first write holding a marker reached the
// client, and when the last write before it did.
type stampWriter struct {
	h              http.Header
	marker         string
	before, marked time.Time
}

func (s *stampWriter) Header() http.Header { return s.h }
func (s *stampWriter) WriteHeader(int)     {}
func (s *stampWriter) Flush()              {}
func (s *stampWriter) Write(p []byte) (int, error) {
	if s.marked.IsZero() {
		if strings.Contains(string(p), s.marker) {
			s.marked = time.Now()
		} else {
			s.before = time.Now()
		}
	}
	return len(p), nil
}

// chatChunk is one streamed chat completion chunk with some text.
func chatChunk(text string) string {
	return fmt.Sprintf("data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", text)
}

// BenchmarkRescueGap measures what mid-stream rescue adds between the
// last token of a stream that breaks and the first token of its
// continuation, as the client sees them: the gap between the write of
// "two " and the write of "three" (gap-ms). The stream breaks by a cut
// connection, which the gateway sees at once; a stall adds the
// stream_idle_timeout before it. "unbroken" is the same gap in a
// stream that does not break. The upstreams answer at once, so the gap
// is the gateway's own work plus one upstream round trip on loopback
// (a new call: connect, request, the continuation's first event).
func BenchmarkRescueGap(b *testing.B) {
	flush := func(w http.ResponseWriter) { w.(http.Flusher).Flush() }
	head := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
	}
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		head(w)
		for _, t := range []string{"One ", "two "} {
			_, _ = io.WriteString(w, chatChunk(t))
			flush(w)
		}
		panic(http.ErrAbortHandler)
	}))
	defer cut.Close()
	rest := func(w http.ResponseWriter, words ...string) {
		for _, t := range words {
			_, _ = io.WriteString(w, chatChunk(t))
			flush(w)
		}
		_, _ = io.WriteString(w, "data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}
	cont := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		head(w)
		rest(w, "three", " four.")
	}))
	defer cont.Close()
	whole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		head(w)
		rest(w, "One ", "two ", "three", " four.")
	}))
	defer whole.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	for _, tc := range []struct{ name, first string }{{"rescued", addr(cut)}, {"unbroken", addr(whole)}} {
		b.Run(tc.name, func(b *testing.B) {
			h := mustLoadHandler(b, `{
				"providers": [
					{"name": "a", "api_key": "k", "stream_usage": false, "proxy": `+gatewayProxy(tc.first)+`},
					{"name": "b", "api_key": "k", "stream_usage": false, "proxy": `+gatewayProxy(addr(cont))+`}
				],
				"models": [{"name": "m", "providers": ["a", "b"]}],
				"fail_threshold": 1000000
			}`)
			body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"Count to four."}]}`
			var gaps time.Duration
			b.ResetTimer()
			for range b.N {
				w := &stampWriter{h: make(http.Header), marker: "three"}
				r := httptest.NewRequest("POST", "http://gateway.example/v1/chat/completions", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
				if err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
					b.Fatal(err)
				}
				if w.marked.IsZero() {
					b.Fatal("the stream did not go on after two words")
				}
				if !w.before.IsZero() { // (else the words came in one write)
					gaps += w.marked.Sub(w.before)
				}
			}
			b.ReportMetric(float64(gaps.Microseconds())/1000/float64(b.N), "gap-ms")
		})
	}
}
