package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// Tests of issue 9: each reproduces an attack on the gateway, or a
// fault of an upstream, that the gateway once let through.

// A key that differs from a routed key only in case is read by Go's
// encoding/json (and so by Ollama and other Go servers) as that key:
// {"model":"a","MODEL":"b"} would be routed on a and served as b.
func TestModelSmugglingByKeyCase(t *testing.T) {
	srv, rec := newRecorder(t, false)
	s := withDefaults(`
		provider rec ` + srv.URL + `
		model allowed rec`)
	start(t, s)
	hc := newHTTPClient(t)
	for _, tc := range []struct{ name, body, code string }{
		{"MODEL after model", `{"model":"allowed","MODEL":"forbidden","messages":[]}`, "duplicate_key"},
		{"Model before model", `{"Model":"forbidden","model":"allowed","messages":[]}`, "ambiguous_key"},
		{"stream with a long s", `{"model":"allowed","messages":[],"stream":false,"\u017ftream":true}`, "duplicate_key"},
		{"max_tokens with a Kelvin sign", `{"model":"allowed","messages":[],"max_tokens":5,"max_to\u212aens":100000}`, "duplicate_key"},
		{"lone MAX_TOKENS", `{"model":"allowed","messages":[],"MAX_TOKENS":100000}`, "ambiguous_key"},
		{"lone Messages", `{"model":"allowed","Messages":[{"role":"user","content":"hi"}]}`, "ambiguous_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectOpenAIError(t, post(t, hc, "/v1/chat/completions", []byte(tc.body)), http.StatusBadRequest, tc.code)
		})
	}
	if n := rec.count(); n != 0 {
		t.Errorf("the upstream received %d requests; last body %s", n, rec.last(t).Body)
	}
	// the control: the same request without the smuggled key is served
	if res := post(t, hc, "/v1/chat/completions", []byte(`{"model":"allowed","messages":[],"max_tokens":5}`)); res.Status != 200 {
		t.Errorf("plain request: %d %s", res.Status, res.Body)
	}
}

// allocated returns the bytes the whole process (Caddy and the gateway
// in it included) allocates while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// An 8 MiB body whose `models` array repeats a valid name about a
// million times once cost 250 to 330 MB and seconds of CPU per request;
// eight at once took the process past 2 GB. Now the list is bounded
// (no repeats, no more entries than the gateway has routes and
// model+provider pairs) and reading a request costs about its size.
func TestClientModelsBomb(t *testing.T) {
	// The bodies' read deadline is raised: eight 8 MiB uploads at once
	// under -race on a loaded machine may take longer than the default
	// 30s, and this test is about memory, not time.
	start(t, withDefaults(`
		client_models
		max_body 16MB
		read_body_timeout 10m`))
	hc := newHTTPClient(t)
	bomb := func(item string) []byte {
		var b bytes.Buffer
		b.WriteString(`{"model":"only-alpha","messages":[{"role":"user","content":"hi"}],"models":[`)
		for b.Len() < 8<<20 {
			b.WriteString(item)
			b.WriteByte(',')
		}
		b.WriteString(item + `]}`)
		return b.Bytes()
	}
	for _, tc := range []struct{ name, item string }{
		{"a model repeated", `"only-beta"`},
		{"a route repeated", `"auto"`},
		{"a pinned model repeated", `"beta/only-beta"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bomb(tc.item)
			var res rawResponse
			alloc := allocated(func() { res = post(t, hc, "/v1/chat/completions", body) })
			expectOpenAIError(t, res, http.StatusBadRequest, "invalid_models")
			t.Logf("%d bytes allocated for a %d byte body (%.1fx)", alloc, len(body), float64(alloc)/float64(len(body)))
			if alloc > 3*uint64(len(body)) {
				t.Errorf("the request allocated %.1f times its body size", float64(alloc)/float64(len(body)))
			}
		})
	}

	t.Run("eight at once", func(t *testing.T) {
		body := bomb(`"only-beta"`)
		var wg sync.WaitGroup
		codes := make([]int, 8)
		alloc := allocated(func() {
			for i := range codes {
				wg.Go(func() { codes[i] = postStatus(hc, body) })
			}
			wg.Wait()
		})
		for _, c := range codes {
			if c != http.StatusBadRequest {
				t.Errorf("status %d, want 400", c)
			}
		}
		if t.Failed() {
			return
		}
		if alloc > 3*uint64(len(codes)*len(body)) {
			t.Errorf("eight requests allocated %.1f times their bodies", float64(alloc)/float64(len(codes)*len(body)))
		}
	})

	t.Run("a list within bounds still works", func(t *testing.T) {
		body := chatBody("only-alpha", `"models":["only-beta","alpha/chat"]`)
		res := post(t, hc, "/v1/chat/completions", body, "X-Mock-Fault", "alpha:status,code=503")
		if res.Status != 200 || routeOf(res.Header).Provider != "beta" {
			t.Errorf("got %d from %s: %s", res.Status, routeOf(res.Header), res.Body)
		}
		for _, bad := range []string{
			`"models":["only-beta","only-beta"]`,
			`"models":["only-beta",42]`,
			`"models":[` + strings.Repeat(`"auto",`, 50) + `"chat"]`,
		} {
			expectOpenAIError(t, post(t, hc, "/v1/chat/completions", chatBody("only-alpha", bad)), http.StatusBadRequest, "invalid_models")
		}
	})
}

// postStatus sends a chat completions request from any goroutine and
// returns the status, or 0 when none came.
func postStatus(hc *http.Client, body []byte) int {
	resp, err := hc.Post(gatewayURL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// With enable_on_path_suffix *, the path after /v1 is the endpoint the
// provider is called at, under its base path. A dot segment, encoded or
// not, once took the call out of the base path, with the operator's key.
func TestPathTraversal(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", testKey)
	srv, rec := newRecorder(t, false)
	start(t, setup{Mocks: []mockSite{}, Route: `
		enable_on_path_suffix *
		provider rec ` + srv.URL + `/v1/restricted {
			api_key {env.LLMROUTE_TEST_KEY}
		}
		model m rec`})
	hc := newHTTPClient(t)
	for _, path := range []string{
		"/v1/%2e%2e/%2e%2e/admin",
		"/v1/%2E%2E/%2E%2E/admin",
		"/v1/..%2f..%2fadmin",
		"/v1/..%2F..%2Fadmin",
		"/x/../../../admin",
		"/v1/./admin",
		"/v1/..;/..;/admin",
		"/v1/%2e%2e%5c%2e%2e%5cadmin",
		"/v1/%252e%252e/%252e%252e/admin",
		"/v1/chat/completions/../../../admin",
	} {
		t.Run(path, func(t *testing.T) {
			expectOpenAIError(t, post(t, hc, path, chatBody("m")), http.StatusBadRequest, "invalid_path")
		})
	}
	if n := rec.count(); n != 0 {
		got := rec.last(t)
		t.Errorf("the upstream received %d requests; the last at %s with %q", n, got.Path, got.Header.Get("Authorization"))
	}
	// the control: a plain path is served, under the base path
	if res := post(t, hc, "/v1/custom/endpoint", chatBody("m")); res.Status != 200 {
		t.Fatalf("plain path: %d %s", res.Status, res.Body)
	}
	if got := rec.last(t).Path; got != "/v1/restricted/custom/endpoint" {
		t.Errorf("upstream path %q", got)
	}
}

// The operator's key travels with what the client sends upstream: a
// client's query string (?key=…) and billing headers (OpenAI-Organization,
// OpenAI-Project) once went along, so a client chose which organization
// or project the operator's key billed. Only what the provider's format
// needs, and what the operator names, is forwarded.
func TestForwardAllowlist(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", testKey)
	srv, rec := newRecorder(t, false)
	start(t, setup{Mocks: []mockSite{}, Route: `
		forward_headers X-Request-Id
		provider rec ` + srv.URL + ` {
			api_key {env.LLMROUTE_TEST_KEY}
		}
		provider az ` + srv.URL + ` {
			format azure
			api_key {env.LLMROUTE_TEST_KEY}
		}
		model m rec
		model deployment az`})
	hc := newHTTPClient(t)
	headers := []string{
		"OpenAI-Organization", "org-chosen-by-client",
		"OpenAI-Project", "proj-chosen-by-client",
		"X-Custom", "client-header",
		"X-Forwarded-Host", "evil.example",
		"X-Request-Id", "req-1",
		"OpenAI-Beta", "assistants=v2",
		"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
	for _, tc := range []struct{ model, path, query string }{
		{"m", "/v1/chat/completions?key=client-chosen&organization=org-x", ""},
		{"deployment", "/v1/chat/completions?api-version=1999-01-01&key=client-chosen", "api-version=2024-10-21"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			if res := post(t, hc, tc.path, chatBody(tc.model), headers...); res.Status != 200 {
				t.Fatalf("%d %s", res.Status, res.Body)
			}
			got := rec.last(t)
			if got.Query != tc.query {
				t.Errorf("upstream query %q, want %q", got.Query, tc.query)
			}
			for _, name := range []string{"OpenAI-Organization", "OpenAI-Project", "X-Custom"} {
				if v := got.Header.Values(name); len(v) != 0 {
					t.Errorf("client header %s reached the upstream: %q", name, v)
				}
			}
			if v := got.Header.Get("X-Forwarded-Host"); v == "evil.example" {
				t.Errorf("the client's X-Forwarded-Host reached the upstream")
			}
			for name, want := range map[string]string{
				"X-Request-Id": "req-1", "OpenAI-Beta": "assistants=v2",
				"Traceparent":  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				"Content-Type": "application/json",
			} {
				if v := got.Header.Get(name); v != want {
					t.Errorf("upstream %s = %q, want %q", name, v, want)
				}
			}
		})
	}
}

// Once llm_route has checked a client's key, or stripped the client's
// credentials for a provider, what reads the request afterwards does not
// see them: placeholders such as {http.request.header.X-Api-Key} in
// log_append fields (the access log), later handlers. Caddy's own
// record of the request as it arrived (the access log's request>headers)
// is made before any handler runs: it redacts Authorization and Cookie
// only, and the README's filter is what covers the rest.
func TestClientKeysOutOfLogs(t *testing.T) {
	secret := "sk-gateway-client-" + randomHex(8)
	t.Setenv("LLMROUTE_CLIENT_SECRET", secret)
	dir := t.TempDir()
	plain, filtered := dir+"/access.log", dir+"/filtered.log"
	logAppend := ""
	for _, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
		logAppend += "\tlog_append seen_" + h + " {http.request.header." + h + "}\n"
	}
	for _, keys := range []bool{true, false} {
		name := "stripped"
		route := defaultRoute
		if keys {
			name = "checked"
			route += "\t\tkey team {\n\t\t\tsecret {env.LLMROUTE_CLIENT_SECRET}\n\t\t}\n"
		}
		t.Run(name, func(t *testing.T) {
			start(t, setup{
				Site: logAppend + "\tlog {\n\t\toutput file " + plain + "\n\t\tformat json\n\t}\n" +
					"\tlog filtered {\n\t\toutput file " + filtered + "\n\t\tformat filter {\n\t\t\twrap json\n" +
					"\t\t\trequest>headers>X-Api-Key replace REDACTED\n\t\t\trequest>headers>Api-Key replace REDACTED\n" +
					"\t\t\trequest>headers>X-Goog-Api-Key replace REDACTED\n\t\t}\n\t}",
				Route: route, Mocks: defaultMocks(),
			})
			hc := newHTTPClient(t)
			for i, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
				v := secret
				if h == "Authorization" {
					v = "Bearer " + secret
				}
				res := post(t, hc, "/v1/chat/completions", chatBody("chat"), h, v, "X-Test-Id", name+strconv.Itoa(i))
				if res.Status != 200 {
					t.Fatalf("%s: %d %s", h, res.Status, res.Body)
				}
			}
			// the entries are written once the responses are
			var entries map[string]map[string]any
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				entries = accessEntries(t, plain)
				if _, ok := entries[name+"3"]; ok || time.Now().After(deadline) {
					break
				}
			}
			for i, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
				e, ok := entries[name+strconv.Itoa(i)]
				if !ok {
					t.Fatalf("no access log entry for %s", h)
				}
				if got := e["seen_"+h]; got != "REDACTED" {
					t.Errorf("log_append of %s after llm_route shows %q, want REDACTED", h, got)
				}
				req := e["request"].(map[string]any)
				delete(req, "headers") // Caddy's record of the request as it arrived
				if b, _ := json.Marshal(e); strings.Contains(string(b), secret) {
					t.Errorf("the client key sent in %s is in the access log beyond Caddy's request>headers: %s", h, b)
				}
			}
			b, err := os.ReadFile(filtered)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), secret) {
				t.Errorf("the client key is in the access log filtered as the README says")
			}
			// Caddy's own record of the request redacts Authorization
			if strings.Contains(string(b), "Bearer "+secret) {
				t.Errorf("Authorization in clear")
			}
		})
	}
}

// accessEntries reads an access log file, by X-Test-Id.
func accessEntries(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		req, _ := e["request"].(map[string]any)
		hdr, _ := req["headers"].(map[string]any)
		if ids, _ := hdr["X-Test-Id"].([]any); len(ids) == 1 {
			out[ids[0].(string)] = e
		}
	}
	return out
}

// An upstream that reflects the key it was sent (an error quoting the
// request, a header echoing Authorization) once had the operator's key
// reach the client and the debug log. The gateway knows the key of each
// attempt and replaces it wherever the answer carries it.
func TestReflectedKeyScrubbed(t *testing.T) {
	canary := "sk-canary-reflect-" + randomHex(12)
	t.Setenv("LLMROUTE_CANARY", canary)
	reflect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		key := strings.TrimPrefix(auth, "Bearer ")
		w.Header().Set("X-Echo-Authorization", auth)
		w.Header().Set("Www-Authenticate", `Bearer realm="`+key+`"`)
		switch {
		case strings.HasPrefix(r.URL.Path, "/json401/"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s","type":"invalid_request_error"}}`, key)
		case strings.HasPrefix(r.URL.Path, "/text500/"):
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "internal error while calling with %s", auth)
		case strings.HasPrefix(r.URL.Path, "/stream/"):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"your key is %s\"}}]}\n\n", key)
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"your key is %s"},"finish_reason":"stop"}]}`, key)
		}
	}))
	t.Cleanup(reflect.Close)
	caddyLog := t.TempDir() + "/caddy.log"
	route := ""
	for _, p := range []string{"json401", "text500", "stream", "ok"} {
		route += fmt.Sprintf("\t\tprovider %[1]s %[2]s/%[1]s/v1 {\n\t\t\tapi_key {env.LLMROUTE_CANARY}\n\t\t}\n\t\tmodel %[1]s %[1]s\n", p, reflect.URL)
	}
	start(t, setup{
		Global: fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}", caddyLog),
		Mocks:  []mockSite{}, Route: route,
	})
	hc := newHTTPClient(t)
	var seen strings.Builder
	for _, tc := range []struct {
		model  string
		status int
		stream bool
	}{
		{"json401", 401, false}, {"text500", 500, false}, {"ok", 200, false}, {"stream", 200, true},
	} {
		t.Run(tc.model, func(t *testing.T) {
			body := chatBody(tc.model)
			if tc.stream {
				body = chatBody(tc.model, `"stream":true`)
			}
			res := post(t, hc, "/v1/chat/completions", body)
			if res.Status != tc.status {
				t.Errorf("status %d, want %d: %s", res.Status, tc.status, res.Body)
			}
			_ = res.Header.Write(&seen)
			seen.Write(res.Body)
			if !strings.Contains(string(res.Body), "REDACTED") {
				t.Errorf("the reflected key was not replaced in %s", res.Body)
			}
		})
	}
	logs, err := os.ReadFile(caddyLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "upstream roundtrip") {
		t.Errorf("the debug log holds no upstream round trip")
	}
	for name, text := range map[string]string{"client responses": seen.String(), "debug log": string(logs)} {
		if i := strings.Index(text, canary); i >= 0 {
			t.Errorf("the key is in the %s: …%s…", name, text[max(0, i-200):min(len(text), i+60)])
		}
	}
}

// A client that sends its body a byte at a time once held its request,
// and a goroutine, for as long as it liked. Reading the body now has a
// deadline (read_body_timeout), answered with 408 in the client's shape.
func TestSlowBodyTimesOut(t *testing.T) {
	s := withDefaults(`
		read_body_timeout 1s`)
	start(t, s)
	type result struct {
		status int
		body   string
		err    error
	}
	trickle := func(path string) result {
		conn, err := net.Dial("tcp", "127.0.0.1:9080")
		if err != nil {
			return result{err: err}
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second)) // generous: a loaded machine
		body := chatBody("chat")
		if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost:9080\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body)); err != nil {
			return result{err: err}
		}
		// one byte every 100ms until the gateway answers
		done := make(chan struct{})
		go func() {
			for i := 0; i < len(body)-1; i++ {
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := conn.Write(body[i : i+1]); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		close(done)
		if err != nil {
			return result{err: err}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return result{status: resp.StatusCode, body: string(b)}
	}
	var wg sync.WaitGroup
	results := make([]result, 20)
	for i := range results {
		path := "/v1/chat/completions"
		if i%2 == 1 {
			path = "/v1/messages"
		}
		wg.Go(func() { results[i] = trickle(path) })
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.status != http.StatusRequestTimeout {
			t.Errorf("connection %d: status %d, error %v: %s", i, r.status, r.err, r.body)
			continue
		}
		if i%2 == 0 && jsonPath([]byte(r.body), "error.code") != "request_timeout" {
			t.Errorf("not an OpenAI error: %s", r.body)
		}
		if i%2 == 1 && (jsonPath([]byte(r.body), "type") != "error" || jsonPath([]byte(r.body), "error.type") == "") {
			t.Errorf("not an Anthropic error: %s", r.body)
		}
	}
	// a body that arrives in time is served
	if res := post(t, newHTTPClient(t), "/v1/chat/completions", chatBody("chat")); res.Status != 200 {
		t.Errorf("after the slow bodies: %d %s", res.Status, res.Body)
	}
}

// An answer the gateway cannot translate for the client was reported as
// a provider that "could not be reached"; it says what happened now, and
// the next target is still tried.
func TestUntranslatableAnswer(t *testing.T) {
	garbled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"message","content":"not a list of blocks"`) // and not JSON
	}))
	t.Cleanup(garbled.Close)
	start(t, withDefaults(`
		provider garbled `+garbled.URL+` {
			format anthropic
		}
		model bad garbled
		model bad-then-alpha garbled alpha`))
	hc := newHTTPClient(t)
	res := post(t, hc, "/v1/chat/completions", chatBody("bad"))
	if res.Status != http.StatusBadGateway || res.json("error.code") != "upstream_invalid_response" ||
		!strings.Contains(res.json("error.message"), "cannot be translated") {
		t.Errorf("got %d %s", res.Status, res.Body)
	}
	if strings.Contains(string(res.Body), "could not be reached") {
		t.Errorf("the provider answered, yet: %s", res.Body)
	}
	res = post(t, hc, "/v1/chat/completions", chatBody("bad-then-alpha"))
	if res.Status != 200 {
		t.Fatalf("fallback: %d %s", res.Status, res.Body)
	}
	expectAttempts(t, res.Header, "alpha", 2)
}

// A 200 answer whose JSON a clean close cuts short once counted as a
// success, and the client got half a body. It is a failure now: the next
// target is tried when nothing reached the client yet (answers up to
// 1 MiB are held until whole), and the response is aborted otherwise.
func TestJSONAnswerCutShort(t *testing.T) {
	whole := string(chatAnswer("the whole answer"))
	long := string(chatAnswer(strings.Repeat("long answer ", 200_000)))
	cutter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := whole
		if strings.Contains(r.URL.Path, "/long/") {
			body = long
		}
		body = body[:len(body)*2/3]
		if strings.Contains(r.URL.Path, "/framed/") {
			// a body whose framing ends properly, cut all the same
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
			return
		}
		// no Content-Length, no chunks: the close ends the body (a
		// clean one: the request read, the write side shut first)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + body)
		_ = buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}))
	t.Cleanup(cutter.Close)
	start(t, withDefaults(`
		provider cutter `+cutter.URL+`/close/v1
		provider framed `+cutter.URL+`/framed/v1
		provider long `+cutter.URL+`/long/v1
		model cut cutter
		model cut-then-alpha cutter alpha
		model framed-then-alpha framed alpha
		model long-cut long`))
	hc := newHTTPClient(t)
	res := post(t, hc, "/v1/chat/completions", chatBody("cut"))
	if res.Status != http.StatusBadGateway || res.json("error.code") != "upstream_invalid_response" || !strings.Contains(res.json("error.message"), "cut short") {
		t.Errorf("cut answer: %d %s", res.Status, res.Body)
	}
	for _, model := range []string{"cut-then-alpha", "framed-then-alpha"} {
		res = post(t, hc, "/v1/chat/completions", chatBody(model))
		if res.Status != 200 || res.json("choices.0.message.content") != alphaText {
			t.Errorf("%s: %d %s", model, res.Status, truncateBody(res.Body))
		}
		expectAttempts(t, res.Header, "alpha", 2)
	}
	// too long to hold: it was on its way when it broke off
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, gatewayURL+"/v1/chat/completions", bytes.NewReader(chatBody("long-cut")))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("a long answer cut short ended cleanly: %d, %d bytes", resp.StatusCode, len(got))
	}
}

// chatAnswer is a chat completion answering text.
func chatAnswer(text string) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-cut", "object": "chat.completion", "created": 1, "model": "m",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": text}}},
	})
	return b
}

func truncateBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// A stream whose first event is an error (Anthropic's event: error, an
// OpenAI chunk with an error) was committed and broke for the client,
// with no fallback. The gateway holds a stream until its first event with
// data: an error there is an attempt that failed, so the next target
// answers, or the client gets the error as an error status.
func TestStreamFirstEventError(t *testing.T) {
	errFirst := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, ": keep-alive\n\n")
		w.(http.Flusher).Flush()
		if strings.Contains(r.URL.Path, "/anthropic/") {
			_, _ = io.WriteString(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
		} else {
			_, _ = io.WriteString(w, "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n")
		}
	}))
	t.Cleanup(errFirst.Close)
	start(t, withDefaults(`
		provider erra `+errFirst.URL+`/anthropic/v1 {
			format anthropic
		}
		provider erro `+errFirst.URL+`/openai/v1
		model claude-chat-err erra claude {
			upstream_name mock-claude
		}
		model chat-err erro alpha
		model only-err erro`))

	t.Run("anthropic error event, then a working provider", func(t *testing.T) {
		s := messageStream(t, antClient(t), messageParams("claude-chat-err", prompt))
		if s.Err != nil || s.Text != claudeText {
			t.Fatalf("got %q, %v", s.Text, s.Err)
		}
		expectAttempts(t, s.Resp.Header, "claude", 2)
	})
	t.Run("openai error chunk, then a working provider", func(t *testing.T) {
		s := chatStream(t, oaClient(t), chatParams("chat-err", prompt))
		if s.Err != nil || s.Text != alphaText {
			t.Fatalf("got %q, %v", s.Text, s.Err)
		}
		expectAttempts(t, s.Resp.Header, "alpha", 2)
	})
	t.Run("translated both ways", func(t *testing.T) {
		s := chatStream(t, oaClient(t), chatParams("claude-chat-err", prompt))
		if s.Err != nil || s.Text != claudeText {
			t.Fatalf("chat client: got %q, %v", s.Text, s.Err)
		}
		expectAttempts(t, s.Resp.Header, "claude", 2)
		s = messageStream(t, antClient(t), messageParams("chat-err", prompt))
		if s.Err != nil || s.Text != alphaText {
			t.Fatalf("messages client: got %q, %v", s.Text, s.Err)
		}
		expectAttempts(t, s.Resp.Header, "alpha", 2)
	})
	t.Run("openai error chunk, no other provider", func(t *testing.T) {
		s := chatStream(t, oaClient(t), chatParams("only-err", prompt))
		var oerr *openai.Error
		if !asError(s.Err, &oerr) || oerr.StatusCode != http.StatusInternalServerError || !strings.Contains(oerr.Message, "while processing your request") {
			t.Fatalf("got %q, %v; want a 500 with the upstream's error", s.Text, s.Err)
		}
	})
}
