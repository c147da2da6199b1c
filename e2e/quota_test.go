package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// quotaSetup has three priced models on alpha, one request a day each,
// and route r trying them in order (big, mid, small).
func quotaSetup(onExhausted string) setup {
	return withDefaults(`
		model big alpha {
			upstream_name mock-big
			price 10 30
			daily_requests 1
		}
		model mid alpha {
			upstream_name mock-mid
			price 1 3
			daily_requests 1
		}
		model small alpha {
			upstream_name mock-small
			price 0.1 0.3
			daily_requests 1
		}
		route r big mid small {
			` + onExhausted + `
		}
`)
}

// A model over its daily requests is skipped: the request goes down the
// degradation order (by default the cheapest candidate with headroom),
// the reason names the limit, and once every candidate is exhausted the
// client gets 429 all_quotas_exhausted with Retry-After.
func TestQuotaDegradation(t *testing.T) {
	for _, tc := range []struct {
		name, onExhausted string
		order             []string
	}{
		{"cheapest", "", []string{"big", "small", "mid"}},
		{"next", "on_exhausted next", []string{"big", "mid", "small"}},
		{"listed", "on_exhausted mid small", []string{"big", "mid", "small"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start(t, quotaSetup(tc.onExhausted))
			c := oaClient(t)
			for i, want := range tc.order {
				var hr *http.Response
				if _, err := c.Chat.Completions.New(ctxT(t), chatParams("r", prompt), oaoption.WithResponseInto(&hr)); err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				if got := hr.Header.Get("X-LLM-Model"); got != want {
					t.Errorf("request %d answered by %s, want %s", i+1, got, want)
				}
				if reason := hr.Header.Get("X-LLM-Route-Reason"); i > 0 && !strings.Contains(reason, "quota=daily_requests") {
					t.Errorf("request %d: reason %q does not name the limit", i+1, reason)
				}
			}
			_, err := c.Chat.Completions.New(ctxT(t), chatParams("r", prompt))
			var oerr *openai.Error
			if !asError(err, &oerr) || oerr.StatusCode != http.StatusTooManyRequests || oerr.Code != "all_quotas_exhausted" {
				t.Fatalf("every model exhausted: %v, want 429 all_quotas_exhausted", err)
			}
			if n, err := strconv.Atoi(oerr.Response.Header.Get("Retry-After")); err != nil || n < 1 || n > 86400 {
				t.Errorf("Retry-After %q, want the seconds until midnight", oerr.Response.Header.Get("Retry-After"))
			}
		})
	}
}

// Client keys: a request without a key or with an unknown one gets 401
// before any upstream call, a key asking for a model it may not use gets
// 403, and a key's own limit applies to it alone.
func TestClientKeys(t *testing.T) {
	t.Setenv("E2E_TEAM_A_KEY", "sk-team-a-1f2e3d")
	t.Setenv("E2E_TEAM_B_KEY", "sk-team-b-9a8b7c")
	logFile := filepath.Join(t.TempDir(), "access.log")
	s := withDefaults(`
		key team-a {
			secret {env.E2E_TEAM_A_KEY}
			models chat
		}
		key team-b {
			secret {env.E2E_TEAM_B_KEY}
			daily_requests 1
		}
`)
	s.Site = fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}", logFile)
	start(t, s)
	withKey := func(k string) openai.Client { return oaClient(t, oaoption.WithAPIKey(k)) }

	for _, tc := range []struct{ name, key, code string }{
		{"no key", "", "missing_api_key"},
		{"unknown key", "sk-not-a-key", "invalid_api_key"},
	} {
		var c openai.Client
		if tc.key == "" {
			c = oaClient(t, oaoption.WithHeaderDel("Authorization"))
		} else {
			c = withKey(tc.key)
		}
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 401 || oerr.Code != tc.code {
			t.Errorf("%s: %v, want 401 %s", tc.name, err, tc.code)
		} else if mock := oerr.Response.Header.Get("X-Mock-Name"); mock != "" {
			t.Errorf("%s: a provider (%s) was called", tc.name, mock)
		}
	}

	a := withKey("sk-team-a-1f2e3d")
	if _, err := a.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithHeader("X-Test-Id", "a-chat")); err != nil {
		t.Fatalf("team-a on an allowed model: %v", err)
	}
	_, err := a.Chat.Completions.New(ctxT(t), chatParams("only-beta", prompt))
	var oerr *openai.Error
	if !asError(err, &oerr) || oerr.StatusCode != 403 || oerr.Code != "model_not_allowed" {
		t.Errorf("team-a on another model: %v, want 403 model_not_allowed", err)
	}

	b := withKey("sk-team-b-9a8b7c")
	if _, err := b.Chat.Completions.New(ctxT(t), chatParams("only-beta", prompt)); err != nil {
		t.Fatalf("team-b's first request: %v", err)
	}
	_, err = b.Chat.Completions.New(ctxT(t), chatParams("only-beta", prompt))
	if !asError(err, &oerr) || oerr.StatusCode != 429 || oerr.Code != "all_quotas_exhausted" {
		t.Errorf("team-b over its daily requests: %v, want 429", err)
	}
	// team-a's limits are its own.
	if _, err := a.Chat.Completions.New(ctxT(t), chatParams("chat", prompt)); err != nil {
		t.Errorf("team-a after team-b ran out: %v", err)
	}
	// The log names the key, never its secret.
	entries := readAccessLog(t, logFile)
	if e, ok := entries["a-chat"]; !ok || e.Key != "team-a" {
		t.Errorf("access log entry %+v, want llm_key team-a", e)
	}
	if raw, err := os.ReadFile(logFile); err != nil || strings.Contains(string(raw), "sk-team-a-1f2e3d") || strings.Contains(string(raw), "sk-team-b-9a8b7c") {
		t.Error("a client key's secret is in the access log")
	}
}

// The usage of a native stream whose client did not ask for it is
// counted (the gateway asks the provider), and the client sees no extra
// chunk.
func TestStreamUsageCounted(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	s := withDefaults("")
	s.Site = fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}", logFile)
	start(t, s)

	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, gatewayURL+"/v1/chat/completions",
		strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"`+prompt+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-Id", "raw-stream")
	resp, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Fatalf("stream %d %q", resp.StatusCode, body)
	}
	if strings.Contains(string(body), `"usage":{`) {
		t.Errorf("the client got a usage chunk it did not ask for: %q", body)
	}

	// An SDK client that did not ask sees no chunk without choices.
	c := oaClient(t)
	st := c.Chat.Completions.NewStreaming(ctxT(t), chatParams("chat", prompt), oaoption.WithHeader("X-Test-Id", "sdk-stream"))
	for st.Next() {
		if len(st.Current().Choices) == 0 {
			t.Errorf("a chunk without choices reached the client: %s", st.Current().RawJSON())
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	st.Close()

	entries := readAccessLog(t, logFile)
	words := int64(len(strings.Fields(alphaText)))
	for _, id := range []string{"raw-stream", "sdk-stream"} {
		if e := entries[id]; e.PromptTokens == 0 || e.CompletionTokens != words {
			t.Errorf("%s: usage counted %d+%d, want the prompt and %d completion tokens", id, e.PromptTokens, e.CompletionTokens, words)
		}
	}
}
