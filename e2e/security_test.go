package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// testKey is the provider key the tests inject through the environment.
const testKey = "sk-provider-5c4b3a2d1e0f"

// clientCredentials are the credential headers a client sends besides
// the SDK's own; none may reach a provider that does not forward them.
func clientCredentials() []oaoption.RequestOption {
	return []oaoption.RequestOption{
		oaoption.WithHeader("X-Api-Key", clientKey),
		oaoption.WithHeader("Api-Key", clientKey),
		oaoption.WithHeader("X-Goog-Api-Key", clientKey),
		oaoption.WithHeader("Cookie", "session="+clientKey),
	}
}

// An https provider next to an http one: both answer, and the TLS
// upstream sees its own Host, the injected key and no client credential.
func TestTLSAndPlainProviders(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", testKey)
	srv, rec := newRecorder(t, true)
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, setup{
		Mocks: defaultMocks()[:1],
		Route: fmt.Sprintf(`
		provider secure %s {
			api_key {env.LLMROUTE_TEST_KEY}
			transport http {
				tls_trusted_ca_certs %s
			}
		}
		provider plain http://127.0.0.1:%d
		model dual secure plain {
			upstream_name dual-upstream
		}
`, srv.URL, caFile, portAlpha),
	})
	c := oaClient(t, clientCredentials()...)

	var hr *http.Response
	resp, err := c.Chat.Completions.New(ctxT(t), chatParams("secure/dual", prompt), oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("https provider: %v", err)
	}
	expectAttempts(t, hr.Header, "secure", 1)
	if resp.Choices[0].Message.Content != "answer from the recorder" {
		t.Errorf("content %q", resp.Choices[0].Message.Content)
	}
	got := rec.last(t)
	if !got.TLS {
		t.Errorf("the upstream request did not use TLS")
	}
	if want := srv.Listener.Addr().String(); got.Host != want {
		t.Errorf("upstream Host %q, want %q", got.Host, want)
	}
	if got.Method != http.MethodPost || got.Path != "/v1/chat/completions" {
		t.Errorf("upstream request %s %s", got.Method, got.Path)
	}
	if v := got.Header.Values("Authorization"); len(v) != 1 || v[0] != "Bearer "+testKey {
		t.Errorf("upstream Authorization %q, want the provider key only", v)
	}
	for _, name := range []string{"X-Api-Key", "Api-Key", "X-Goog-Api-Key", "Cookie"} {
		if v := got.Header.Values(name); len(v) != 0 {
			t.Errorf("client credential header %s reached the upstream: %q", name, v)
		}
	}
	for name, vals := range got.Header {
		for _, v := range vals {
			if strings.Contains(v, clientKey) {
				t.Errorf("the client key reached the upstream in %s", name)
			}
		}
	}
	if m := jsonPath(got.Body, "model"); m != "dual-upstream" {
		t.Errorf("upstream model %q", m)
	}

	resp, err = c.Chat.Completions.New(ctxT(t), chatParams("plain/dual", prompt), oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("http provider: %v", err)
	}
	expectAttempts(t, hr.Header, "plain", 1)
	if resp.Choices[0].Message.Content != alphaText || hr.Header.Get("X-Mock-Name") != "alpha" {
		t.Errorf("content %q from %q", resp.Choices[0].Message.Content, hr.Header.Get("X-Mock-Name"))
	}

	// unpinned: the https provider first
	before := rec.count()
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("dual", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, hr.Header, "secure", 1)
	if rec.count() != before+1 {
		t.Errorf("the https upstream got %d requests, want 1", rec.count()-before)
	}
}

// credentialSetup has one provider per format, each injecting the key
// from the environment into a mock that demands exactly that key, one
// provider that forwards the client's key, and one without any key.
func credentialSetup() setup {
	key := "{env.LLMROUTE_TEST_KEY}"
	return setup{
		Mocks: []mockSite{
			{Port: portAlpha, Name: "alpha", Text: alphaText, Lines: []string{"api_key " + key}},
			{Port: portClaude, Name: "claude", Text: claudeText, Lines: []string{"api_key " + key}},
			{Port: portExtra1, Name: "azure", Text: betaText, Lines: []string{"api_key " + key}},
			{Port: portExtra2, Name: "byok", Text: betaText, Lines: []string{"api_key " + clientKey}},
		},
		Route: fmt.Sprintf(`
		provider alpha http://127.0.0.1:%[1]d {
			api_key %[5]s
		}
		provider claude http://127.0.0.1:%[2]d {
			format anthropic
			api_key %[5]s
		}
		provider azure http://127.0.0.1:%[3]d {
			format azure
			api_key %[5]s
		}
		provider byok http://127.0.0.1:%[4]d {
			forward_client_auth
		}
		provider nokey http://127.0.0.1:%[1]d
		model gpt alpha
		model claude-chat claude
		model az azure {
			upstream_name my-deployment
		}
		model byok byok
		model nokey nokey
`, portAlpha, portClaude, portExtra1, portExtra2, key),
	}
}

func TestCredentials(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", testKey)
	start(t, credentialSetup())
	c := oaClient(t, clientCredentials()...)

	t.Run("openai", func(t *testing.T) {
		var hr *http.Response
		resp, err := c.Chat.Completions.New(ctxT(t), chatParams("gpt", prompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("openai format: %v", err)
		}
		expectRoute(t, hr, "gpt", "alpha", "gpt", 1)
		if resp.Choices[0].Message.Content != alphaText {
			t.Errorf("content %q", resp.Choices[0].Message.Content)
		}
		s := chatStream(t, c, chatParams("gpt", prompt))
		if s.Err != nil || s.Text != alphaText {
			t.Errorf("stream: %q %v", s.Text, s.Err)
		}
	})

	t.Run("anthropic", func(t *testing.T) {
		ac := antClient(t,
			antoption.WithHeader("Authorization", "Bearer "+clientKey),
			antoption.WithHeader("Api-Key", clientKey))
		var hr *http.Response
		msg, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt), antoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("anthropic format: %v", err)
		}
		expectRoute(t, hr, "claude-chat", "claude", "claude-chat", 1)
		if msg.Content[0].Text != claudeText {
			t.Errorf("content %q", msg.Content[0].Text)
		}
		s := messageStream(t, ac, messageParams("claude-chat", prompt))
		if s.Err != nil || s.Text != claudeText {
			t.Errorf("stream: %q %v", s.Text, s.Err)
		}
	})

	t.Run("azure", func(t *testing.T) {
		var hr *http.Response
		resp, err := c.Chat.Completions.New(ctxT(t), chatParams("az", prompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("azure format: %v", err)
		}
		expectRoute(t, hr, "az", "azure", "az", 1)
		if resp.Choices[0].Message.Content != betaText || resp.Model != "my-deployment" {
			t.Errorf("content %q model %q", resp.Choices[0].Message.Content, resp.Model)
		}
		emb, err := c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
			Model: "az", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")},
		})
		if err != nil || len(emb.Data) != 1 {
			t.Errorf("azure embeddings: %v", err)
		}
	})

	t.Run("forward_client_auth", func(t *testing.T) {
		byok := oaClient(t) // Authorization: Bearer <client key> only
		var hr *http.Response
		resp, err := byok.Chat.Completions.New(ctxT(t), chatParams("byok", prompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("forwarded client key: %v", err)
		}
		expectRoute(t, hr, "byok", "byok", "byok", 1)
		if resp.Choices[0].Message.Content != betaText {
			t.Errorf("content %q", resp.Choices[0].Message.Content)
		}
		// another client key is forwarded as well, and refused upstream
		_, err = byok.Chat.Completions.New(ctxT(t), chatParams("byok", prompt), oaoption.WithAPIKey("sk-client-wrong"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 401 {
			t.Errorf("wrong forwarded key: %v, want 401", err)
		}
	})

	t.Run("no key means the mock refuses", func(t *testing.T) {
		// proves the mocks check: the client's key is stripped and nothing
		// is injected, so the upstream sees no credential at all
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("nokey", prompt))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 401 || !strings.Contains(oerr.Message, "missing API key") {
			t.Errorf("got %v, want 401 missing API key", err)
		}
		if oerr != nil && routeOf(oerr.Response.Header).Attempts != 1 {
			t.Errorf("a 401 was retried: %s", routeOf(oerr.Response.Header))
		}
	})

}

// recordingTransport keeps every response the client got, headers and
// body, to search them afterwards.
type recordingTransport struct {
	inner http.RoundTripper
	mu    sync.Mutex
	seen  bytes.Buffer
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	rt.mu.Lock()
	fmt.Fprintf(&rt.seen, "%s %s -> %d\n", req.Method, req.URL, resp.StatusCode)
	_ = resp.Header.Write(&rt.seen)
	rt.seen.Write(body)
	rt.seen.WriteString("\n\n")
	rt.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if readErr != nil {
		// a broken stream: hand the client what came, then the error
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{readErr}))
	}
	return resp, nil
}

func (rt *recordingTransport) String() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.seen.String()
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// The provider key never shows anywhere: not in logs at DEBUG, not in
// anything the client gets, not in the config the admin API returns.
func TestCanaryKeyNeverLeaks(t *testing.T) {
	canary := "sk-canary-7f3a9c" + randomHex(12)
	t.Setenv("LLMROUTE_CANARY", canary)
	dir := t.TempDir()
	caddyLog := filepath.Join(dir, "caddy.log")
	accessLog := filepath.Join(dir, "access.log")
	key := "{env.LLMROUTE_CANARY}"
	start(t, setup{
		Global: fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}", caddyLog),
		Site:   fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}", accessLog),
		Mocks: []mockSite{
			{Port: portAlpha, Name: "alpha", Text: alphaText, Lines: []string{"api_key " + key}},
			{Port: portBeta, Name: "beta", Text: betaText, Lines: []string{"api_key " + key}},
			{Port: portClaude, Name: "claude", Text: claudeText, Lines: []string{"api_key " + key}},
		},
		Route: fmt.Sprintf(`
		provider alpha http://127.0.0.1:%[1]d {
			api_key %[6]s
		}
		provider beta http://127.0.0.1:%[2]d {
			api_key %[6]s
		}
		provider claude http://127.0.0.1:%[3]d {
			format anthropic
			api_key %[6]s
		}
		provider dead1 http://127.0.0.1:%[4]d {
			api_key %[6]s
		}
		provider dead2 http://127.0.0.1:%[5]d {
			format anthropic
			api_key %[6]s
		}
		rescue off
		model chat alpha beta
		model claude-chat claude
		model dead dead1
		model dead-claude dead2
`, portAlpha, portBeta, portClaude, portDead1, portDead2, key),
	})

	rt := &recordingTransport{inner: newHTTPClient(t).Transport}
	hc := &http.Client{Transport: rt, Timeout: 15 * time.Second}
	c := oaClient(t, oaoption.WithHTTPClient(hc))
	ac := antClient(t, antoption.WithHTTPClient(hc))

	// successes, streamed and not, in both formats, with a fallback
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt)); err != nil {
		t.Fatalf("chat: %v", err)
	}
	if s := chatStream(t, c, chatParams("chat", prompt)); s.Err != nil || s.Text != alphaText {
		t.Fatalf("chat stream: %q %v", s.Text, s.Err)
	}
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=503")); err != nil {
		t.Fatalf("chat with fallback: %v", err)
	}
	if _, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt)); err != nil {
		t.Fatalf("messages: %v", err)
	}
	if s := messageStream(t, ac, messageParams("claude-chat", prompt)); s.Err != nil || s.Text != claudeText {
		t.Fatalf("messages stream: %q %v", s.Text, s.Err)
	}
	// failures: all targets down, all failing, a stream broken midway
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("dead", prompt)); err == nil {
		t.Fatal("dead provider answered")
	}
	if _, err := ac.Messages.New(ctxT(t), messageParams("dead-claude", prompt)); err == nil {
		t.Fatal("dead provider answered")
	}
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("status,code=503")); err == nil {
		t.Fatal("failing providers answered")
	}
	if s := chatStream(t, c, chatParams("chat", prompt), faultHeader("alpha:cut")); s.Err == nil {
		t.Fatal("cut stream ended cleanly")
	}
	if s := messageStream(t, ac, messageParams("claude-chat", prompt), antFaultHeader("claude:stall")); s.Err == nil {
		t.Fatal("stalled stream ended cleanly")
	}

	cfg := do(t, newHTTPClient(t), http.MethodGet, adminURL+"/config/", nil, 0)
	if cfg.Status != 200 || !strings.Contains(string(cfg.Body), "{env.LLMROUTE_CANARY}") {
		t.Errorf("admin config: %d, want the placeholder in it", cfg.Status)
	}
	logs := map[string]string{}
	for _, f := range []string{caddyLog, accessLog} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("reading log: %v", err)
		}
		logs[f] = string(b)
	}
	// the logs were written at the levels asked for
	if l := logs[caddyLog]; !strings.Contains(l, `"level":"debug"`) || !strings.Contains(l, "upstream roundtrip") {
		t.Errorf("the debug log holds no upstream round trips (%d bytes)", len(l))
	}
	if l := logs[accessLog]; !strings.Contains(l, `"llm_provider":"alpha"`) || !strings.Contains(l, `"llm_attempts":2`) {
		t.Errorf("the access log has no llm_route fields:\n%s", l)
	}
	for name, text := range map[string]string{
		"caddy log":          logs[caddyLog],
		"access log":         logs[accessLog],
		"client responses":   rt.String(),
		"admin /config/":     string(cfg.Body),
		"admin /config/ (q)": fmt.Sprintf("%q", cfg.Body),
	} {
		if i := strings.Index(text, canary); i >= 0 {
			t.Errorf("the canary key is in the %s: …%s…", name, text[max(0, i-300):min(len(text), i+100)])
		}
		// a partial key is a leak too
		if strings.Contains(text, canary[:20]) {
			t.Errorf("a prefix of the canary key is in the %s", name)
		}
	}
	if len(rt.String()) < 1000 {
		t.Errorf("recorded only %d bytes of responses", len(rt.String()))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Active health checks authenticate like requests do: a provider whose
// checks carry the right key stays up, one with a wrong key goes down
// and is tried last. The key shows in no log either.
func TestActiveHealthChecks(t *testing.T) {
	canary := "sk-canary-7f3a9c" + randomHex(12)
	t.Setenv("LLMROUTE_CANARY", canary)
	caddyLog := filepath.Join(t.TempDir(), "caddy.log")
	key := "{env.LLMROUTE_CANARY}"
	start(t, setup{
		Global: fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}", caddyLog),
		Mocks: []mockSite{
			{Port: portAlpha, Name: "alpha", Text: alphaText, Lines: []string{"api_key " + key}},
			{Port: portClaude, Name: "claude", Text: claudeText, Lines: []string{"api_key " + key}},
			{Port: portBeta, Name: "beta", Text: betaText},
		},
		Route: fmt.Sprintf(`
		provider alpha http://127.0.0.1:%[1]d {
			api_key %[4]s
			health_uri /v1/models
			health_interval 100ms
		}
		provider claude http://127.0.0.1:%[2]d {
			format anthropic
			api_key %[4]s
			health_uri /v1/models
			health_interval 100ms
		}
		provider wrongkey http://127.0.0.1:%[1]d {
			api_key sk-not-the-right-key
			health_uri /v1/models
			health_interval 100ms
		}
		provider beta http://127.0.0.1:%[3]d
		model alpha-first alpha beta
		model wrong-first wrongkey beta
		model claude-chat claude
`, portAlpha, portClaude, portBeta, key),
	})
	// The first checks run while the configuration starts, before the
	// mock sites listen, and mark every checked provider down; the next
	// ones, 100ms later, bring the healthy ones back.
	time.Sleep(400 * time.Millisecond)
	c := oaClient(t)
	var hr *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("alpha-first", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectRoute(t, hr, "alpha-first", "alpha", "alpha-first", 1)
	ac := antClient(t)
	if _, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt), antoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectRoute(t, hr, "claude-chat", "claude", "claude-chat", 1)

	// the control: checks with a wrong key fail, so beta comes first
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("wrong-first", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectRoute(t, hr, "wrong-first", "beta", "wrong-first", 1)

	b, err := os.ReadFile(caddyLog)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), canary[:20]) {
		t.Errorf("the canary key is in the debug log")
	}

	// The health checker's events name the module they come from: the
	// providers' reverse proxies. (They came out as the site's `respond`
	// handler when the proxy was provisioned with llm_route's own context.)
	events := 0
	for _, line := range strings.Split(string(b), "\n") {
		var ev struct {
			Logger, Msg, Name, Origin string
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Logger != "events" || (ev.Name != "healthy" && ev.Name != "unhealthy") {
			continue
		}
		events++
		if ev.Origin != "http.handlers.reverse_proxy" {
			t.Errorf("%s event with origin %q, want http.handlers.reverse_proxy", ev.Name, ev.Origin)
		}
	}
	if events == 0 {
		t.Errorf("no health event logged")
	}
}
