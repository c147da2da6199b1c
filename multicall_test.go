package llmroute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/translate"
)

func TestReadAnswer(t *testing.T) {
	for _, tc := range []struct {
		endpoint, body string
		want           strategies.Answer
	}{
		{"/chat/completions", `{"choices":[{"message":{"content":"Hi there","refusal":null},"finish_reason":"stop"}]}`,
			strategies.Answer{Text: "Hi there", Finish: "stop"}},
		{"/chat/completions", `{"choices":[{"message":{"content":null,"refusal":"No."},"finish_reason":"stop"}]}`,
			strategies.Answer{Refusal: "No.", Finish: "refusal"}},
		{"/chat/completions", `{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"tool_calls":[{"function":{"name":"f","arguments":"{ \"x\": 1 }"}}]},"finish_reason":"tool_calls"}]}`,
			strategies.Answer{Text: "ab", ToolCalls: "f {\"x\":1}\n", Finish: "tool_calls"}},
		{"/completions", `{"choices":[{"text":"cut","finish_reason":"length"}]}`,
			strategies.Answer{Text: "cut", Finish: "length"}},
		{"/messages", `{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Yes"},{"type":"tool_use","name":"g","input":{"a":[1]}}],"stop_reason":"max_tokens"}`,
			strategies.Answer{Text: "Yes", ToolCalls: "g {\"a\":[1]}\n", Finish: "length"}},
		{"/messages", `{"content":[{"type":"text","text":""}],"stop_reason":"refusal"}`,
			strategies.Answer{Finish: "refusal"}},
		{"/responses", `{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"Part"}]},{"type":"function_call","name":"h","arguments":"{}"}]}`,
			strategies.Answer{Text: "Part", ToolCalls: "h {}\n", Finish: "length"}},
		{"/responses", `{"status":"completed","output":[{"type":"message","content":[{"type":"refusal","refusal":"Nope"}]}]}`,
			strategies.Answer{Refusal: "Nope", Finish: "refusal"}},
	} {
		if got := readAnswer(tc.endpoint, []byte(tc.body)); got != tc.want {
			t.Errorf("%s %s:\n got %+v\nwant %+v", tc.endpoint, tc.body, got, tc.want)
		}
	}
}

func TestWithUsage(t *testing.T) {
	u := Usage{PromptTokens: 100, CompletionTokens: 20, CacheReadTokens: 30, CacheWriteTokens: 10}
	for _, tc := range []struct {
		endpoint, body string
		want           map[string]int64
	}{
		{"/chat/completions", `{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`,
			map[string]int64{"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "prompt_tokens_details.cached_tokens": 30, "cache_creation_input_tokens": 10}},
		{"/messages", `{"usage":{"input_tokens":1,"output_tokens":1}}`,
			map[string]int64{"input_tokens": 60, "output_tokens": 20, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 10}},
		{"/responses", `{"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}`,
			map[string]int64{"input_tokens": 100, "output_tokens": 20, "total_tokens": 120, "input_tokens_details.cached_tokens": 30}},
	} {
		out := withUsage(tc.endpoint, []byte(tc.body), u)
		for path, n := range tc.want {
			if got := gjson.GetBytes(out, "usage."+path).Int(); got != n {
				t.Errorf("%s: usage.%s = %d, want %d in %s", tc.endpoint, path, got, n, out)
			}
		}
		// read back, the usage is the same
		if back := bodyUsage(out); tc.endpoint != "/responses" && back != u {
			t.Errorf("%s: read back %+v, want %+v", tc.endpoint, back, u)
		}
	}
}

// TestSynthStream checks the synthesized streams with the gateway's own
// stream checks (every data line JSON, a terminator), and what a client
// of the same API would read from them.
func TestSynthStream(t *testing.T) {
	for _, tc := range []struct {
		endpoint, body string
		usage          bool
		text           string
	}{
		{"/chat/completions", `{"id":"c1","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, true, "Hello world"},
		{"/completions", `{"id":"c2","created":5,"model":"m","choices":[{"index":0,"text":"Once upon","finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, false, "Once upon"},
		{"/messages", `{"id":"m1","type":"message","role":"assistant","model":"m","content":[{"type":"thinking","thinking":"so","signature":"sig"},{"type":"text","text":"Hello world"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`, false, "Hello world"},
		{"/responses", `{"id":"resp_1","object":"response","created_at":5,"status":"completed","model":"m","output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello world","annotations":[]}]},{"type":"function_call","id":"fc_1","call_id":"c1","name":"f","arguments":"{\"a\":1}","status":"completed"}],"usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}`, false, "Hello world"},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			events, err := synthStream(tc.endpoint, []byte(tc.body), tc.usage)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			aw := newAttemptWriter(context.Background(), rec)
			aw.Header().Set("Content-Type", "text/event-stream")
			if _, err := aw.Write(events); err != nil {
				t.Fatalf("%v in\n%s", err, events)
			}
			if err := aw.finish(); err != nil || !aw.terminated || aw.streamErr != nil {
				t.Fatalf("finish %v, terminated %v, stream error %v:\n%s", err, aw.terminated, aw.streamErr, events)
			}
			if tc.usage || tc.endpoint == "/messages" || tc.endpoint == "/responses" {
				if aw.usage.PromptTokens != 3 || aw.usage.CompletionTokens != 2 {
					t.Errorf("usage read from the stream: %+v", aw.usage)
				}
			}
			if got := streamText(t, tc.endpoint, events); got != tc.text {
				t.Errorf("text %q, want %q", got, tc.text)
			}
		})
	}
	if _, err := synthStream("/embeddings", []byte(`{}`), false); err == nil {
		t.Error("a stream for /embeddings")
	}
}

// streamText gathers the text deltas of a stream.
func streamText(t *testing.T, endpoint string, events []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(events)) {
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		ev := gjson.Parse(data)
		switch {
		case translate.IsMessages(endpoint):
			b.WriteString(ev.Get("delta.text").Str)
		case endpoint == "/completions":
			b.WriteString(ev.Get("choices.0.text").Str)
		case endpoint == "/responses":
			if ev.Get("type").Str == "response.output_text.delta" {
				b.WriteString(ev.Get("delta").Str)
			}
		default:
			b.WriteString(ev.Get("choices.0.delta.content").Str)
		}
	}
	return b.String()
}

// TestConsensusClientGone: when the client goes away during a vote, the
// calls in flight are cancelled (their upstream requests end) and the
// handler returns, leaving no call behind.
func TestConsensusClientGone(t *testing.T) {
	arrived, ended := make(chan struct{}, 2), make(chan struct{}, 2)
	hold := func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
		ended <- struct{}{}
	}
	a, b := newUpstream(t, hold), newUpstream(t, hold)
	h := mustLoadHandler(t, `{
		"providers": [
			{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(a.addr())+`},
			{"name": "b", "api_key": "key-b", "proxy": `+gatewayProxy(b.addr())+`}
		],
		"models": [{"name": "m1", "providers": ["a"]}, {"name": "m2", "providers": ["b"]}],
		"routes": [{"name": "vote", "targets": [{"model": "m1"}, {"model": "m2"}], "strategy": {"name": "consensus"}}]
	}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := httptest.NewRecorder()
	r := httptest.NewRequestWithContext(ctx, "POST", "http://gateway.example/v1/chat/completions",
		strings.NewReader(`{"model":"vote","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	done := make(chan error, 1)
	go func() {
		done <- h.ServeHTTP(rec, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	}()
	<-arrived
	<-arrived
	cancel()
	<-ended
	<-ended
	var herr caddyhttp.HandlerError
	if err := <-done; !errors.As(err, &herr) || herr.StatusCode != 499 {
		t.Errorf("ServeHTTP: %v, want a 499 (the client went away)", err)
	}
}

// TestJudgedAnswerBounded: the judge is sent at most maxJudged bytes of
// an answer (a cascade's cheap tier answered 4 MiB), so that answers
// held in memory do not grow by the judge's copies of them, nor the
// judge's bill by their size.
func TestJudgedAnswerBounded(t *testing.T) {
	long := strings.Repeat("forty two ", 4<<20/10)
	cheap := newUpstream(t, answer(200, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`+long+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}`))
	premium := newUpstream(t, answer(200, okChat))
	judge := newUpstream(t, answer(200, `{"id":"j","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"9"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`))
	h := mustLoadHandler(t, `{
		"providers": [
			{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(cheap.addr())+`},
			{"name": "b", "api_key": "key-b", "proxy": `+gatewayProxy(premium.addr())+`},
			{"name": "j", "api_key": "key-j", "proxy": `+gatewayProxy(judge.addr())+`}
		],
		"models": [
			{"name": "cheap", "providers": ["a"], "input_price": 0.1, "output_price": 0.1},
			{"name": "premium", "providers": ["b"], "input_price": 5, "output_price": 5},
			{"name": "grader", "providers": ["j"]}
		],
		"routes": [
			{"name": "tiered", "targets": [{"model": "cheap"}, {"model": "premium"}], "strategy": {"name": "cascade", "judge": {"model": "grader"}}}
		]
	}`)
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"tiered","messages":[{"role":"user","content":"6 times 7?"}]}`)
	if rec.Code != http.StatusOK || rec.Header().Get(HeaderCascade) != "cheap:judge=0.90:ok" {
		t.Fatalf("status %d, %s %q", rec.Code, HeaderCascade, rec.Header().Get(HeaderCascade))
	}
	if judge.requests() != 1 {
		t.Fatalf("the judge was asked %d times", judge.requests())
	}
	content := gjson.Get(judge.body(0), "messages.0.content").Str
	if n := len(judge.body(0)); n > maxJudged+8<<10 {
		t.Errorf("the judge's request is %d bytes, want at most about %d", n, maxJudged)
	}
	if !strings.Contains(content, "6 times 7?") || !strings.Contains(content, "forty two forty two") || !strings.Contains(content, "[the answer goes on") {
		t.Errorf("the judge's prompt lacks the question, the answer's start or the mark of its cut: %.200s", content)
	}

	// A 4 MiB question: the judge gets its start and its end.
	question := "Here is a document. " + strings.Repeat("lorem ipsum ", 4<<20/12) + " So: 6 times 7?"
	body, _ := json.Marshal(map[string]any{"model": "tiered", "messages": []map[string]string{{"role": "user", "content": question}}})
	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/chat/completions", string(body))
	if rec.Code != http.StatusOK || judge.requests() != 2 {
		t.Fatalf("status %d, the judge asked %d times", rec.Code, judge.requests())
	}
	content = gjson.Get(judge.body(1), "messages.0.content").Str
	if n := len(judge.body(1)); n > 2*maxJudged+8<<10 {
		t.Errorf("the judge's request is %d bytes, want at most about %d", n, 2*maxJudged)
	}
	if !strings.Contains(content, "Here is a document.") || !strings.Contains(content, "So: 6 times 7?") || !strings.Contains(content, "of the question left out]") {
		t.Errorf("the judge's prompt lacks the question's start, its end or the mark of the cut: %.200s", content)
	}
}

// TestMaxAttemptsCapsEachCall: a handler's max_attempts caps the
// attempts of each call of cascade and consensus (a tier, a voter, the
// judge), not their number: with max_attempts 1 a cascade still
// escalates past a tier the judge fails and a consensus still asks all
// its voters and its judge, while a call whose first provider fails does
// not move on to the model's next provider.
func TestMaxAttemptsCapsEachCall(t *testing.T) {
	judgeSays := func(score string) string {
		return `{"id":"j","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"` + score + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
	}
	down := newUpstream(t, answer(500, `{"error":{"message":"down"}}`))
	cheap, spare, premium, third := newUpstream(t, answer(200, okChat)), newUpstream(t, answer(200, okChat)), newUpstream(t, answer(200, okChat)), newUpstream(t, answer(200, okChat))
	judge := newUpstream(t, answer(200, judgeSays("2")))
	h := mustLoadHandler(t, `{
		"max_attempts": 1,
		"providers": [
			{"name": "down", "api_key": "k", "proxy": `+gatewayProxy(down.addr())+`},
			{"name": "a", "api_key": "k", "proxy": `+gatewayProxy(cheap.addr())+`},
			{"name": "s", "api_key": "k", "proxy": `+gatewayProxy(spare.addr())+`},
			{"name": "b", "api_key": "k", "proxy": `+gatewayProxy(premium.addr())+`},
			{"name": "c", "api_key": "k", "proxy": `+gatewayProxy(third.addr())+`},
			{"name": "j", "api_key": "k", "proxy": `+gatewayProxy(judge.addr())+`}
		],
		"models": [
			{"name": "cheap", "providers": ["a"], "quality": 0.3, "input_price": 0.1, "output_price": 0.1},
			{"name": "flaky", "providers": ["down", "s"], "quality": 0.3, "input_price": 0.1, "output_price": 0.1},
			{"name": "premium", "providers": ["b"], "quality": 0.9, "input_price": 5, "output_price": 5},
			{"name": "third", "providers": ["c"], "quality": 0.5, "input_price": 1, "output_price": 1},
			{"name": "grader", "providers": ["j"]}
		],
		"routes": [
			{"name": "tiered", "targets": [{"model": "cheap"}, {"model": "premium"}], "strategy": {"name": "cascade", "judge": {"model": "grader"}}},
			{"name": "flaky-first", "targets": [{"model": "flaky"}, {"model": "premium"}], "strategy": {"name": "cascade"}},
			{"name": "vote", "targets": [{"model": "cheap"}, {"model": "premium"}, {"model": "third"}], "strategy": {"name": "consensus", "mode": "judge", "judge": {"model": "grader"}}}
		]
	}`)
	const ask = `{"model":%q,"messages":[{"role":"user","content":"6 times 7?"}]}`
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", fmt.Sprintf(ask, "tiered"))
	if got := rec.Header().Get(HeaderCascade); rec.Code != http.StatusOK || got != "cheap:judge=0.20 > premium:final" {
		t.Errorf("cascade: status %d, %s %q", rec.Code, HeaderCascade, got)
	}
	if cheap.requests() != 1 || premium.requests() != 1 || judge.requests() != 1 {
		t.Errorf("cascade: cheap %d, premium %d, judge %d calls; want one each", cheap.requests(), premium.requests(), judge.requests())
	}

	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/chat/completions", fmt.Sprintf(ask, "flaky-first"))
	if got := rec.Header().Get(HeaderCascade); rec.Code != http.StatusOK || got != "flaky:status=500 > premium:final" {
		t.Errorf("cascade past a failing call: status %d, %s %q", rec.Code, HeaderCascade, got)
	}
	if down.requests() != 1 || spare.requests() != 0 {
		t.Errorf("the flaky tier's call made %d+%d attempts; max_attempts 1 allows one", down.requests(), spare.requests())
	}

	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/chat/completions", fmt.Sprintf(ask, "vote"))
	if got := rec.Header().Get(HeaderConsensus); rec.Code != http.StatusOK || !strings.HasPrefix(got, "mode=judge votes=") {
		t.Errorf("consensus: status %d, %s %q", rec.Code, HeaderConsensus, got)
	}
	if cheap.requests() != 2 || premium.requests() != 3 || third.requests() != 1 || judge.requests() != 4 {
		t.Errorf("consensus: voters called %d, %d, %d times in all and the judge %d; want each voter once more and the judge thrice more",
			cheap.requests(), premium.requests(), third.requests(), judge.requests())
	}
}
