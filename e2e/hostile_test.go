package e2e

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// inflated is a response body as a client that honours Content-Encoding
// deflate reads it.
func inflated(t *testing.T, res rawResponse) string {
	t.Helper()
	if !strings.EqualFold(res.Header.Get("Content-Encoding"), "deflate") {
		return string(res.Body)
	}
	b, err := io.ReadAll(flate.NewReader(bytes.NewReader(res.Body)))
	if err != nil {
		return string(res.Body)
	}
	return string(b)
}

// An upstream that compresses what it reflects with an encoding the
// gateway did not ask for (the transport asks for gzip only, and
// decompresses it) once had its answer passed on as it came: the key
// scrubber saw only compressed bytes, and a client that inflates the
// body read the operator's key. An answer the gateway cannot read is no
// answer: the next candidate serves the request.
func TestUnrequestedEncodingRefused(t *testing.T) {
	canary := "sk-canary-encoded-" + randomHex(12)
	t.Setenv("LLMROUTE_CANARY", canary)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		var ct, text string
		status := http.StatusOK
		switch {
		case strings.HasPrefix(r.URL.Path, "/text200/"):
			ct, text = "text/plain", "your key is "+key
		case strings.HasPrefix(r.URL.Path, "/json401/"):
			ct, text, status = "application/json", `{"error":{"message":"bad key `+key+`"}}`, http.StatusUnauthorized
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"plain answer"},"finish_reason":"stop"}]}`)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Encoding", "deflate")
		w.WriteHeader(status)
		fw, _ := flate.NewWriter(w, flate.BestCompression)
		_, _ = io.WriteString(fw, text)
		_ = fw.Close()
	}))
	t.Cleanup(up.Close)
	route := "\t\tretry_on 401 5xx\n"
	for _, p := range []string{"text200", "json401", "ok"} {
		route += fmt.Sprintf("\t\tprovider %[1]s %[2]s/%[1]s/v1 {\n\t\t\tapi_key {env.LLMROUTE_CANARY}\n\t\t}\n\t\tmodel %[1]s %[1]s\n", p, up.URL)
	}
	route += "\t\troute r-text200 text200 ok\n\t\troute r-json401 json401 ok\n"
	start(t, setup{Mocks: []mockSite{}, Route: route})
	hc := newHTTPClient(t)
	for _, model := range []string{"text200", "json401"} {
		t.Run(model, func(t *testing.T) {
			res := post(t, hc, "/v1/chat/completions", chatBody("r-"+model))
			body := inflated(t, res)
			if strings.Contains(body, canary) {
				t.Fatalf("the key reached the client: %s", body)
			}
			if res.Status != http.StatusOK || res.Header.Get("X-Llm-Model") != "ok" {
				t.Errorf("status %d from %q, want 200 from the next candidate (ok): %s", res.Status, res.Header.Get("X-Llm-Model"), body)
			}
		})
	}
}
