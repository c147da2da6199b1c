// Package e2e runs llm_route end to end: a real, in-process Caddy loaded
// through its admin API with a Caddyfile that holds the gateway and the
// llm_mock providers it routes to, called with the real OpenAI and
// Anthropic Go SDKs and with plain net/http.
//
// Every test loads its own configuration; the tests share one Caddy
// instance (admin on localhost:2999), so none of them runs in parallel.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-llm-route/llmroute"
	_ "github.com/caddy-llm-route/llmroute/mock"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// Addresses. Everything listens on loopback only.
const (
	gatewayURL = "http://localhost:9080"
	adminURL   = "http://localhost:2999"

	portAlpha   = 9181 // llm_mock "alpha", OpenAI format
	portBeta    = 9182 // llm_mock "beta", OpenAI format
	portClaude  = 9183 // llm_mock "claude", served as an Anthropic provider
	portClaude2 = 9184 // llm_mock "claude2", served as an Anthropic provider
	portExtra1  = 9185 // free for a test's own mock or site
	portExtra2  = 9186 // free for a test's own mock or site
	portDead1   = 9198 // nothing listens here: connect refused
	portDead2   = 9199 // nothing listens here: connect refused
)

// The mocks' answers. Each word is one token and one stream chunk.
const (
	alphaText   = "Alpha speaks first and answers every question quickly."
	betaText    = "Beta is the backup and replies with care."
	claudeText  = "Claude mock says hello from the anthropic side."
	claude2Text = "The second claude mock answers as the fallback."

	// clientKey is the credential clients send to the gateway; it must
	// never reach a provider that does not forward client auth.
	clientKey = "sk-client-0d5e1f2a3b4c"
)

// TestMain waits its turn behind any other run of this suite on the
// machine (they would share its fixed ports), then refuses to run when
// another process already listens on one of the suite's ports: Caddy
// binds with SO_REUSEPORT, so a stray server on the same port would
// silently answer part of the requests.
func TestMain(m *testing.M) {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "llmroute-e2e.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX) // released when the process exits
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot take the suite's lock: %v\n", err)
		os.Exit(1)
	}
	for _, port := range []int{9080, 2999, portAlpha, portBeta, portClaude, portClaude2, portExtra1, portExtra2, portDead1, portDead2} {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 200*time.Millisecond)
		if err == nil {
			conn.Close()
			fmt.Fprintf(os.Stderr, "e2e: port %d on 127.0.0.1 is already in use by another process\n", port)
			os.Exit(1)
		}
	}
	code := m.Run()
	// The lock is held until here: once unreachable, the file would be
	// closed by its finalizer, and the lock with it.
	runtime.KeepAlive(lock)
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// mockSite is one llm_mock provider site.
type mockSite struct {
	Port  int
	Name  string
	Text  string
	Lines []string // further llm_mock subdirectives
}

// setup describes one test configuration.
type setup struct {
	Global string     // extra global options
	Site   string     // extra gateway site directives
	Route  string     // llm_route subdirectives, after the defaults
	Mocks  []mockSite // llm_mock sites; nil means defaultMocks()
	Extra  string     // further raw site blocks
}

// defaultMocks are the four mock providers most tests route to.
func defaultMocks() []mockSite {
	return []mockSite{
		{Port: portAlpha, Name: "alpha", Text: alphaText},
		{Port: portBeta, Name: "beta", Text: betaText},
		{Port: portClaude, Name: "claude", Text: claudeText},
		{Port: portClaude2, Name: "claude2", Text: claude2Text},
	}
}

// defaultRoute declares the providers of defaultMocks and the models
// most tests use:
//   - chat: alpha, then beta (upstream name mock-chat)
//   - only-alpha, only-beta: one provider each
//   - claude-chat: claude, then claude2 (Anthropic format)
const defaultRoute = `
		provider alpha http://127.0.0.1:9181
		provider beta http://127.0.0.1:9182
		provider claude http://127.0.0.1:9183 {
			format anthropic
		}
		provider claude2 http://127.0.0.1:9184 {
			format anthropic
		}
		model chat alpha beta {
			upstream_name mock-chat
		}
		model only-alpha alpha
		model only-beta beta
		model claude-chat claude claude2 {
			upstream_name mock-claude
		}
`

var configTemplate = template.Must(template.New("caddyfile").Parse(`{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
{{.Global}}
}

http://localhost:9080 {
	bind 127.0.0.1
	header X-E2E-Config {{.ID}}
{{.Site}}
	route {
		llm_route {
			first_byte_timeout 500ms
			stream_idle_timeout 500ms
			cooldown 30s
			probe_interval 1m
			fail_threshold 1000
			forward_headers X-Mock-Fault
{{.Route}}
		}
		respond "next" 200
	}
}
{{range .Mocks}}
http://:{{.Port}} {
	bind 127.0.0.1
	llm_mock {
		name {{.Name}}
		text {{.Text}}
{{- range .Lines}}
		{{.}}
{{- end}}
	}
}
{{end}}
{{.Extra}}
`))

var configSeq atomic.Int64

// caddyfile renders the configuration.
func (s setup) caddyfile() string {
	if s.Mocks == nil {
		s.Mocks = defaultMocks()
	}
	if f := os.Getenv("E2E_ACCESS_LOG"); f != "" && s.Site == "" {
		// debugging aid: E2E_ACCESS_LOG=<file> logs the gateway's requests
		s.Site = "\tlog {\n\t\toutput file " + f + "\n\t\tformat json\n\t}"
	}
	if s.Global == "" && os.Getenv("E2E_CADDY_LOG") == "" {
		// keep the test output readable; E2E_CADDY_LOG=1 shows Caddy's logs
		s.Global = "\tlog {\n\t\tlevel ERROR\n\t}"
	}
	var b strings.Builder
	data := struct {
		setup
		ID string
	}{s, fmt.Sprintf("cfg-%d-%d", os.Getpid(), configSeq.Add(1))}
	if err := configTemplate.Execute(&b, data); err != nil {
		panic(err)
	}
	return b.String()
}

// started is the setup start loaded last.
var started setup

// start loads s into the shared Caddy instance with fresh provider
// state. The state of a provider+model pair (cooldowns, live stats)
// outlives a reload as long as some configuration uses it, so the
// running configuration is unloaded first.
func start(t *testing.T, s setup) {
	t.Helper()
	unload(t)
	started = s
	// generous: other builds and tests may share the machine
	tc := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{LoadRequestTimeout: 30 * time.Second})
	cfg := s.caddyfile()
	tc.InitServer(cfg, "caddyfile")
	if t.Failed() && !configActive(cfg) {
		// (a data race reported while the config loaded also marks the
		// test failed; its checks still run)
		t.FailNow()
	}
	// The previous configuration's servers close their listening sockets
	// just after the load returns; Caddy binds with SO_REUSEPORT, so a
	// connection the kernel queued on such a socket would be reset.
	time.Sleep(30 * time.Millisecond)
}

// restart loads the setup of the last start again, with fresh provider
// state.
func restart(t *testing.T) {
	t.Helper()
	start(t, started)
}

// unload replaces the running configuration with one that serves
// nothing, which releases every provider's state.
func unload(t *testing.T) {
	t.Helper()
	const empty = "{\n\tskip_install_trust\n\tadmin localhost:2999\n\thttp_port 9080\n\thttps_port 9443\n\tgrace_period 1ns\n}\n"
	status, body, err := postLoad(ctxT(t), newHTTPClient(t), empty)
	if err != nil {
		return // no Caddy running yet
	}
	if status != http.StatusOK {
		t.Fatalf("unloading the configuration: %d %s", status, body)
	}
	if n := len(upstreams.Pairs()); n != 0 {
		t.Fatalf("%d provider+model pairs still held after unloading", n)
	}
}

// pairInfo returns the state of the pair of provider and upstream
// model, which must be held by exactly one identity.
func pairInfo(t *testing.T, provider, model string) upstreams.PairInfo {
	t.Helper()
	var found []upstreams.PairInfo
	for _, p := range upstreams.Pairs() {
		if p.Provider == provider && p.Model == model {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d states of the pair %s/%s, want 1", len(found), provider, model)
	}
	return found[0]
}

// cooldownUntil is the end of the cooldown of provider and upstream
// model.
func cooldownUntil(t *testing.T, provider, model string) time.Time {
	t.Helper()
	return pairInfo(t, provider, model).CooldownUntil
}

// configActive reports whether the running configuration is cfg, by the
// unique value of the gateway's X-E2E-Config response header.
func configActive(cfg string) bool {
	_, rest, ok := strings.Cut(cfg, "header X-E2E-Config ")
	if !ok {
		return false
	}
	id, _, _ := strings.Cut(rest, "\n")
	resp, err := http.Get(adminURL + "/config/")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), id)
}

// withDefaults is the usual configuration plus extra llm_route lines.
func withDefaults(route string) setup {
	return setup{Route: defaultRoute + route, Mocks: defaultMocks()}
}

// newHTTPClient returns a client with a connection pool of its own,
// closed when the test ends.
func newHTTPClient(t *testing.T) *http.Client {
	return newHTTPClientWith(t, false)
}

// newHTTPClientWith returns a client that may open a fresh connection
// for every request.
func newHTTPClientWith(t *testing.T, noKeepAlive bool) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     10 * time.Second,
		DisableKeepAlives:   noKeepAlive,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: dialRetry{tr}, Timeout: 15 * time.Second}
}

// postLoad posts a Caddyfile to the admin API's /load and returns the
// answer. Every load replaces Caddy's admin server too, and the old one's
// socket (SO_REUSEPORT) closes just after the load returns: a connection
// the kernel had queued on it is reset, and its POST gets no answer. A
// POST without an answer is sent again: loading the same config twice is
// a no-op ("config is unchanged", 200), so this hides no failure.
func postLoad(ctx context.Context, hc *http.Client, caddyfile string) (int, []byte, error) {
	for try := 0; ; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, adminURL+"/load", strings.NewReader(caddyfile))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := hc.Do(req)
		if err != nil {
			if try == 4 || ctx.Err() != nil {
				return 0, nil, err
			}
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, body, err
	}
}

// dialRetry resends a request whose connection could not be opened.
// Caddy binds with SO_REUSEPORT and opens a new listening socket for each
// configuration; the old one closes right after a load, and connections
// the kernel had queued on it are reset. Such a request never reached
// any server, so sending it again hides no failure of the gateway.
type dialRetry struct{ inner *http.Transport }

func (d dialRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	for try := 0; ; try++ {
		resp, err := d.inner.RoundTrip(req)
		var op *net.OpError
		if err == nil || try == 3 || !errors.As(err, &op) || op.Op != "dial" {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, err
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return resp, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d dialRetry) CloseIdleConnections() { d.inner.CloseIdleConnections() }

// oaClient is an openai-go client pointed at the gateway.
func oaClient(t *testing.T, opts ...oaoption.RequestOption) openai.Client {
	base := []oaoption.RequestOption{
		oaoption.WithBaseURL(gatewayURL + "/v1/"),
		oaoption.WithAPIKey(clientKey),
		oaoption.WithMaxRetries(0),
		oaoption.WithHTTPClient(newHTTPClient(t)),
	}
	return openai.NewClient(append(base, opts...)...)
}

// antClient is an anthropic-sdk-go client pointed at the gateway.
func antClient(t *testing.T, opts ...antoption.RequestOption) anthropic.Client {
	base := []antoption.RequestOption{
		antoption.WithBaseURL(gatewayURL + "/"),
		antoption.WithAPIKey(clientKey),
		antoption.WithMaxRetries(0),
		antoption.WithHTTPClient(newHTTPClient(t)),
	}
	return anthropic.NewClient(append(base, opts...)...)
}

// ctxT is a context that ends with the test, bounded in time.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// faultHeader sets the mock fault header on an openai-go request; the
// gateway passes it upstream like any other header.
func faultHeader(spec string) oaoption.RequestOption {
	return oaoption.WithHeader("X-Mock-Fault", spec)
}

// antFaultHeader is faultHeader for anthropic-sdk-go.
func antFaultHeader(spec string) antoption.RequestOption {
	return antoption.WithHeader("X-Mock-Fault", spec)
}

// routed is what the gateway's response headers say about routing.
type routed struct {
	Model    string
	Provider string
	Route    string
	Attempts int
	Mock     []string // X-Mock-Name values: which mock answered
}

func routeOf(h http.Header) routed {
	n, err := strconv.Atoi(h.Get("X-LLM-Attempts"))
	if err != nil {
		n = -1
	}
	return routed{
		Model:    h.Get("X-LLM-Model"),
		Provider: h.Get("X-LLM-Provider"),
		Route:    h.Get("X-LLM-Route"),
		Attempts: n,
		Mock:     h.Values("X-Mock-Name"),
	}
}

func (r routed) String() string {
	return fmt.Sprintf("model=%q provider=%q route=%q attempts=%d mock=%q", r.Model, r.Provider, r.Route, r.Attempts, r.Mock)
}

// expectRoute checks the routing headers of a response that a mock
// answered: model, provider, route, attempt count and that the answer
// came from exactly the mock named like the provider (or mock, if set).
func expectRoute(t *testing.T, resp *http.Response, model, provider, route string, attempts int) {
	t.Helper()
	if resp == nil {
		t.Fatalf("no response captured")
	}
	got := routeOf(resp.Header)
	want := routed{Model: model, Provider: provider, Route: route, Attempts: attempts, Mock: []string{provider}}
	if got.String() != want.String() {
		t.Errorf("routing headers:\n got  %s\n want %s", got, want)
	}
}

// expectAttempts checks the provider and the attempt count only.
func expectAttempts(t *testing.T, h http.Header, provider string, attempts int) {
	t.Helper()
	got := routeOf(h)
	if got.Provider != provider || got.Attempts != attempts {
		t.Errorf("got %s, want provider=%q attempts=%d", got, provider, attempts)
	}
}

// rawResponse is a response read completely.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r rawResponse) json(path string) string { return jsonPath(r.Body, path) }

// jsonPath reads a dotted path of a JSON body, where a number indexes
// an array and "#" is an array's length.
func jsonPath(body []byte, path string) string {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return "<invalid JSON>"
	}
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			if k == "#" {
				v = float64(len(x))
				continue
			}
			var i int
			if _, err := fmt.Sscanf(k, "%d", &i); err != nil || i < 0 || i >= len(x) {
				return ""
			}
			v = x[i]
		default:
			return ""
		}
	}
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// post sends a raw request to the gateway; headers come in name, value
// pairs.
func post(t *testing.T, c *http.Client, path string, body []byte, headers ...string) rawResponse {
	t.Helper()
	return do(t, c, http.MethodPost, gatewayURL+path, bytes.NewReader(body), int64(len(body)), headers...)
}

func do(t *testing.T, c *http.Client, method, url string, body io.Reader, length int64, headers ...string) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// chatBody is a minimal chat completions request body.
func chatBody(model string, extra ...string) []byte {
	s := `{"model":` + strconv.Quote(model) + `,"messages":[{"role":"user","content":"Hello there"}]`
	for _, e := range extra {
		s += "," + e
	}
	return []byte(s + "}")
}

// words returns the first n words of text, joined like the mock streams
// them.
func words(text string, n int) string {
	w := strings.Fields(text)
	if n < len(w) {
		w = w[:n]
	}
	return strings.Join(w, " ")
}

// promptTokens is the mock's prompt size estimate for texts.
func promptTokens(texts ...string) int64 {
	n := 0
	for _, s := range texts {
		n += len(s)
	}
	return int64(max(1, (n+3)/4))
}

// chatParams is a chat completion request with one user message.
func chatParams(model, prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	}
}

// streamResult is what a client made of a streamed answer.
type streamResult struct {
	Text   string
	Events int
	Finish string
	Usage  [2]int64 // prompt, completion
	Err    error
	Resp   *http.Response
}

// chatStream streams a chat completion with openai-go and collects it.
func chatStream(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams, opts ...oaoption.RequestOption) streamResult {
	t.Helper()
	var res streamResult
	opts = append(opts, oaoption.WithResponseInto(&res.Resp))
	stream := c.Chat.Completions.NewStreaming(ctxT(t), p, opts...)
	defer stream.Close()
	var sb strings.Builder
	for stream.Next() {
		ch := stream.Current()
		res.Events++
		for _, choice := range ch.Choices {
			sb.WriteString(choice.Delta.Content)
			if choice.FinishReason != "" {
				res.Finish = choice.FinishReason
			}
		}
		if ch.JSON.Usage.Valid() && ch.Usage.TotalTokens > 0 {
			res.Usage = [2]int64{ch.Usage.PromptTokens, ch.Usage.CompletionTokens}
		}
	}
	res.Text = sb.String()
	res.Err = stream.Err()
	return res
}

// messageStream streams an Anthropic message and collects it.
func messageStream(t *testing.T, c anthropic.Client, p anthropic.MessageNewParams, opts ...antoption.RequestOption) streamResult {
	t.Helper()
	var res streamResult
	opts = append(opts, antoption.WithResponseInto(&res.Resp))
	stream := c.Messages.NewStreaming(ctxT(t), p, opts...)
	defer stream.Close()
	var msg anthropic.Message
	for stream.Next() {
		ev := stream.Current()
		res.Events++
		if err := msg.Accumulate(ev); err != nil {
			res.Err = fmt.Errorf("accumulate: %w", err)
			return res
		}
	}
	res.Err = stream.Err()
	for _, block := range msg.Content {
		res.Text += block.Text
	}
	res.Finish = string(msg.StopReason)
	res.Usage = [2]int64{msg.Usage.InputTokens, msg.Usage.OutputTokens}
	return res
}

// messageParams is an Anthropic request with one user message.
func messageParams(model, prompt string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     anthropic.Model(model),
		MaxTokens: 256,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
	}
}

// asError is errors.As for the SDKs' *Error types.
func asError[T any](err error, target *T) bool {
	return err != nil && errors.As(err, target)
}

// recorded is one request an upstream of ours received.
type recorded struct {
	Method string
	Path   string
	Query  string
	Host   string
	TLS    bool
	Header http.Header
	Body   []byte
}

// recorder is a minimal OpenAI-compatible chat upstream written for the
// tests: it keeps every request and answers with a fixed text.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
		TLS: r.TLS != nil, Header: r.Header.Clone(), Body: body,
	})
	rec.mu.Unlock()
	var req struct {
		Model string `json:"model"`
	}
	_ = json.Unmarshal(body, &req)
	answer, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-recorder", "object": "chat.completion", "created": 1, "model": req.Model,
		"choices": []any{map[string]any{
			"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": "answer from the recorder"},
		}},
		"usage": map[string]any{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Mock-Name", "recorder")
	_, _ = w.Write(answer)
}

// last returns the last request received, failing if there was none.
func (rec *recorder) last(t *testing.T) recorded {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatalf("the upstream received no request")
	}
	return rec.reqs[len(rec.reqs)-1]
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// newRecorder starts a recording upstream on loopback, plain or TLS.
func newRecorder(t *testing.T, useTLS bool) (*httptest.Server, *recorder) {
	rec := new(recorder)
	var srv *httptest.Server
	if useTLS {
		srv = httptest.NewTLSServer(rec)
	} else {
		srv = httptest.NewServer(rec)
	}
	t.Cleanup(srv.Close)
	return srv, rec
}
