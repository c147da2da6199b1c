package llmroute

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// bodyOf builds a request body of about size bytes: head, then item
// repeated (a %d in it is the item's number), then tail.
func bodyOf(head, item, sep, tail string, size int) []byte {
	var b bytes.Buffer
	b.Grow(size + len(head) + len(tail) + len(item) + 32)
	b.WriteString(head)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteString(sep)
		}
		if strings.Contains(item, "%d") {
			fmt.Fprintf(&b, item, i)
		} else {
			b.WriteString(item)
		}
	}
	b.WriteString(tail)
	return b.Bytes()
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestRequestMemory measures what one request costs in memory, from
// reading its body to the upstream call (which fails to connect), for
// bodies of hostile shapes: at most about three times the body, whatever
// its shape. (A `models` array that repeated a valid name a million
// times once cost 70 to 120 times its size.) Reading the prompt, which
// a strategy, a filter or a token limit asks for, costs what
// strategies.Request.ReadPrompt costs on top; it is measured apart and
// bounded more loosely. Translation is another package's and not
// measured here.
func TestRequestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates hundreds of megabytes on old code")
	}
	h := mustLoadHandler(t, `{
		"client_models": true,
		"max_body": 16777216,
		"providers": [
			{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`},
			{"name": "c", "format": "anthropic", "proxy": `+proxyTo("127.0.0.1:1")+`}
		],
		"models": [
			{"name": "m", "providers": ["a"]},
			{"name": "filtered", "providers": ["a"], "context": 100000000, "capabilities": ["tools"]},
			{"name": "claude", "providers": ["c"]}
		]
	}`)
	h.logger = zap.NewNop() // every attempt fails to connect
	const size = 4 << 20
	msg := `{"role":"user","content":"hello there"}`
	type shape struct{ name, head, item, sep, tail string }
	for _, endpoint := range []struct {
		path   string
		shapes []shape
	}{
		{"/v1/chat/completions", []shape{
			{"models repeating a name", `{"model":"m","messages":[` + msg + `],"models":[`, `"m"`, ",", `]}`},
			{"models repeating a route", `{"model":"m","messages":[` + msg + `],"models":[`, `"auto"`, ",", `]}`},
			{"models with unknown names", `{"model":"m","messages":[` + msg + `],"models":[`, `"nope"`, ",", `]}`},
			{"models of distinct names", `{"model":"m","messages":[` + msg + `],"models":[`, `"m%d"`, ",", `]}`},
			{"an array of names under another key", `{"model":"m","messages":[` + msg + `],"x":[`, `"m"`, ",", `]}`},
			{"many messages", `{"model":"m","messages":[`, msg, ",", `]}`},
			{"many tiny messages", `{"model":"m","messages":[`, `{"content":"a"}`, ",", `]}`},
			{"many content parts", `{"model":"m","messages":[{"role":"user","content":[`, `{"type":"text","text":"a"}`, ",", `]}]}`},
			{"escapes in one string", `{"model":"m","messages":[{"role":"user","content":"`, `\u00e9\n`, "", `"}]}`},
			{"one long string", `{"model":"m","messages":[{"role":"user","content":"`, `abcdefgh`, "", `"}]}`},
			{"many tools", `{"model":"m","messages":[` + msg + `],"tools":[`, `{"type":"function","function":{"name":"f"}}`, ",", `]}`},
			{"many top-level keys", `{"model":"m",`, `"k%d":1`, ",", `}`},
			{"long keys", `{"model":"m","messages":[],`, `"k%d` + strings.Repeat("K", 4096) + `":1`, ",", `}`},
			{"numbers", `{"model":"m","messages":[` + msg + `],"x":[`, `1`, ",", `]}`},
			{"nested arrays", `{"model":"m","messages":[` + msg + `],"x":[`, `[[[[[[[[1]]]]]]]]`, ",", `]}`},
			{"a long model name", `{"messages":[],"model":"`, `m`, "", `"}`},
		}},
		{"/v1/messages", []shape{
			{"anthropic blocks", `{"model":"claude","max_tokens":5,"system":"s","messages":[`, `{"role":"user","content":[{"type":"text","text":"a"}]}`, ",", `]}`},
		}},
	} {
		for _, sh := range endpoint.shapes {
			for _, model := range []string{"", "filtered"} {
				body := bodyOf(sh.head, sh.item, sh.sep, sh.tail, size)
				if model != "" {
					if !bytes.Contains(body, []byte(`"model":"m"`)) {
						continue
					}
					body = bytes.Replace(body, []byte(`"model":"m"`), []byte(`"model":"`+model+`"`), 1)
				}
				name := sh.name
				if model != "" {
					name += ", prompt read"
				}
				t.Run(name, func(t *testing.T) {
					var prompt uint64
					if model != "" {
						req := strategies.Request{Body: body}
						prompt = allocated(req.ReadPrompt)
						if limit := 6*uint64(len(body)) + 1<<20; prompt > limit {
							t.Errorf("reading the prompt allocated %.1f times the body", float64(prompt)/float64(len(body)))
						}
					}
					for _, chunked := range []bool{false, true} {
						rec := httptest.NewRecorder()
						var r *http.Request
						if chunked {
							r = httptest.NewRequest("POST", endpoint.path, struct{ *bytes.Reader }{bytes.NewReader(body)})
							r.ContentLength = -1
						} else {
							r = httptest.NewRequest("POST", endpoint.path, bytes.NewReader(body))
						}
						r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
						total := allocated(func() {
							if err := h.ServeHTTP(rec, r, nil); err != nil {
								t.Fatal(err)
							}
						})
						own := total - min(total, prompt)
						t.Logf("chunked=%v: status %d; %.2fx the body, %.2fx of it reading the prompt: %s", chunked, rec.Code,
							float64(total)/float64(len(body)), float64(prompt)/float64(len(body)), truncate(rec.Body.String(), 100))
						if limit := 3*uint64(len(body)) + 1<<20; own > limit {
							t.Errorf("chunked=%v: the request allocated %.1f times its body size", chunked, float64(own)/float64(len(body)))
						}
					}
				})
			}
		}
	}
}

// TestRequestMemoryOneRead: a request whose body the attempt only
// changes by its model (and a stream's include_usage) costs its size
// once, the read: the rewritten body goes upstream as parts of it. (It
// cost twice its size when the rewrite copied the body.)
func TestRequestMemoryOneRead(t *testing.T) {
	h := mustLoadHandler(t, `{
		"max_body": 16777216,
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"]}]
	}`)
	h.logger = zap.NewNop() // the attempt fails to connect
	for _, stream := range []bool{false, true} {
		body := bodyOf(fmt.Sprintf(`{"model":"m","stream":%v,"messages":[{"role":"user","content":"`, stream), `abcdefgh`, "", `"}]}`, 4<<20)
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body))
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
		total := allocated(func() {
			if err := h.ServeHTTP(rec, r, nil); err != nil {
				t.Fatal(err)
			}
		})
		if rec.Code != http.StatusBadGateway {
			t.Fatalf("stream=%v: status %d: %s", stream, rec.Code, truncate(rec.Body.String(), 200))
		}
		if limit := uint64(len(body)) + uint64(len(body))/4; total > limit {
			t.Errorf("stream=%v: the request allocated %.2f times its body", stream, float64(total)/float64(len(body)))
		}
	}
}
