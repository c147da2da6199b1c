package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"
)

// Translation probed from the outside with answers real providers give
// that llm_mock does not: parallel tool calls with text and thinking
// around them, stop sequences, a call cut by the output limit, tool calls
// streamed without their index, errors in the middle of a stream. A
// scripted upstream of each format answers by the script named in the
// prompt; the clients are the real SDKs, and a streamed answer must
// assemble, with the SDK's own accumulator, to the answer the same script
// gives whole.

// script is one scripted answer: whole (for a request without stream)
// and as the events of a stream (each an event's lines, without the
// blank line that ends it). status is the whole answer's status (200 when
// zero).
type script struct {
	status int
	whole  string
	stream []string
	strict bool // refuse stream_options with a 400, as some servers do
	header map[string]string
}

// scriptedUpstream answers every request with the script whose name is
// in its body ("script:<name>").
func scriptedUpstream(t *testing.T, scripts map[string]script) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var sc *script
		for name, s := range scripts {
			if strings.Contains(string(body), "script:"+name+" ") {
				sc = &s
				break
			}
		}
		if sc == nil {
			http.Error(w, "no script", http.StatusTeapot)
			return
		}
		if sc.strict && gjson.GetBytes(body, "stream_options").Exists() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":null,"code":null}}`)
			return
		}
		for k, v := range sc.header {
			w.Header().Set(k, v)
		}
		if !gjson.GetBytes(body, "stream").Bool() || sc.status >= 400 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(max(sc.status, 200))
			_, _ = io.WriteString(w, sc.whole)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range sc.stream {
			_, _ = io.WriteString(w, ev+"\n\n")
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// antEvent is an Anthropic stream event: its name, and its data.
func antEvent(data string) string {
	return "event: " + gjson.Get(data, "type").Str + "\ndata: " + data
}

const (
	// what the Anthropic script answers: text, thinking (which OpenAI
	// clients do not get), then two tool calls at once
	probeAntWhole = `{"id":"msg_probe1","type":"message","role":"assistant","model":"claude-probe-1","content":[` +
		`{"type":"thinking","thinking":"Two cities.","signature":"sig"},` +
		`{"type":"text","text":"Checking both cities."},` +
		`{"type":"tool_use","id":"toolu_paris","name":"get_weather","input":{"city":"Paris","days":1,"unit":"celsius"}},` +
		`{"type":"tool_use","id":"toolu_rome","name":"get_weather","input":{"city":"Rome","days":2,"unit":"celsius"}}],` +
		`"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":50,"cache_read_input_tokens":20,"cache_creation_input_tokens":10,"output_tokens":40}}`

	// what the OpenAI script answers: text, then two tool calls at once
	probeOAWhole = `{"id":"chatcmpl-probe1","object":"chat.completion","created":1741569952,"model":"gpt-probe-1","choices":[{"index":0,"message":{"role":"assistant","content":"Checking both cities.","tool_calls":[` +
		`{"id":"call_paris","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":1,\"unit\":\"celsius\"}"}},` +
		`{"id":"call_rome","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\",\"days\":2,\"unit\":\"celsius\"}"}}]},` +
		`"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":80,"completion_tokens":40,"total_tokens":120,"prompt_tokens_details":{"cached_tokens":30}}}`
)

// probeErrors are the error answers each scripted upstream gives, in
// its own format, by status: the script "err<status>".
var probeErrors = []struct {
	status          int
	antType, oaType string // the error's type in each format
	oaCode          string
}{
	{400, "invalid_request_error", "invalid_request_error", "invalid_value"},
	{401, "authentication_error", "invalid_request_error", "invalid_api_key"},
	{404, "not_found_error", "invalid_request_error", "model_not_found"},
	{413, "request_too_large", "invalid_request_error", ""},
	{429, "rate_limit_error", "requests", "rate_limit_exceeded"},
	{500, "api_error", "server_error", ""},
	{529, "overloaded_error", "server_error", ""},
}

func addErrorScripts(scripts map[string]script, ant bool) {
	for _, e := range probeErrors {
		var body string
		if ant {
			body = fmt.Sprintf(`{"type":"error","error":{"type":%q,"message":"scripted %d"},"request_id":"req_1"}`, e.antType, e.status)
		} else {
			body = fmt.Sprintf(`{"error":{"message":"scripted %d","type":%q,"param":null,"code":%q}}`, e.status, e.oaType, e.oaCode)
		}
		scripts[fmt.Sprintf("err%d", e.status)] = script{status: e.status, whole: body, header: map[string]string{"Retry-After": "17"}}
	}
}

func probeAntScripts() map[string]script {
	start := `{"type":"message_start","message":{"id":"msg_probe1","type":"message","role":"assistant","model":"claude-probe-1","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"cache_read_input_tokens":20,"cache_creation_input_tokens":10,"output_tokens":1}}}`
	events := func(data ...string) []string {
		out := make([]string, len(data))
		for i, d := range data {
			out[i] = antEvent(d)
		}
		return out
	}
	return map[string]script{
		"tools": {whole: probeAntWhole, stream: events(start,
			`{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}`,
			`{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Two cities."}}`,
			`{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}`,
			`{"type":"content_block_stop","index":0}`,
			`{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`,
			`{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking "}}`,
			`{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"both cities."}}`,
			`{"type":"content_block_stop","index":1}`,
			`{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_paris","name":"get_weather","input":{}}}`,
			`{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}`,
			`{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\", "}}`,
			`{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"days\": 1, \"unit\": \"celsius\"}"}}`,
			`{"type":"content_block_stop","index":2}`,
			`{"type":"ping"}`,
			`{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_rome","name":"get_weather","input":{}}}`,
			`{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Rome\", \"days\": 2, "}}`,
			`{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"celsius\"}"}}`,
			`{"type":"content_block_stop","index":3}`,
			`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}`,
			`{"type":"message_stop"}`)},
		"stopseq": {
			whole: `{"id":"msg_probe2","type":"message","role":"assistant","model":"claude-probe-1","content":[{"type":"text","text":"1, 2, 3, "}],"stop_reason":"stop_sequence","stop_sequence":"4","usage":{"input_tokens":12,"output_tokens":8}}`,
			stream: events(
				`{"type":"message_start","message":{"id":"msg_probe2","type":"message","role":"assistant","model":"claude-probe-1","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}`,
				`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
				`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"1, 2, 3, "}}`,
				`{"type":"content_block_stop","index":0}`,
				`{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"4"},"usage":{"output_tokens":8}}`,
				`{"type":"message_stop"}`)},
		// a response_format answer: the forced json_response tool
		"json": {
			whole: `{"id":"msg_probe3","type":"message","role":"assistant","model":"claude-probe-1","content":[{"type":"tool_use","id":"toolu_json","name":"json_response","input":{"city":"Paris","days":[1,2]}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":30,"output_tokens":12}}`,
			stream: events(
				`{"type":"message_start","message":{"id":"msg_probe3","type":"message","role":"assistant","model":"claude-probe-1","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":30,"output_tokens":1}}}`,
				`{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_json","name":"json_response","input":{}}}`,
				`{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}`,
				`{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\", "}}`,
				`{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"days\": [1, 2]}"}}`,
				`{"type":"content_block_stop","index":0}`,
				`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":12}}`,
				`{"type":"message_stop"}`)},
		"midstream": {stream: events(start,
			`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
			`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial answer"}}`,
			`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)},
	}
}

func probeOAScripts() map[string]script {
	chunk := func(delta, finish string) string {
		return `data: {"id":"chatcmpl-probe1","object":"chat.completion.chunk","created":1741569952,"model":"gpt-probe-1","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + `}],"usage":null}`
	}
	usage := `data: {"id":"chatcmpl-probe1","object":"chat.completion.chunk","created":1741569952,"model":"gpt-probe-1","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":40,"total_tokens":120,"prompt_tokens_details":{"cached_tokens":30}}}`
	return map[string]script{
		// OpenAI's own shape: each call's id and name first, then its
		// arguments in pieces
		"tools": {whole: probeOAWhole, stream: []string{
			chunk(`{"role":"assistant","content":"","refusal":null}`, "null"),
			chunk(`{"content":"Checking "}`, "null"),
			chunk(`{"content":"both cities."}`, "null"),
			chunk(`{"tool_calls":[{"index":0,"id":"call_paris","type":"function","function":{"name":"get_weather","arguments":""}}]}`, "null"),
			chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Paris\","}}]}`, "null"),
			chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"\"days\":1,\"unit\":\"celsius\"}"}}]}`, "null"),
			chunk(`{"tool_calls":[{"index":1,"id":"call_rome","type":"function","function":{"name":"get_weather","arguments":""}}]}`, "null"),
			chunk(`{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\":\"Rome\",\"days\":2,\"unit\":\"celsius\"}"}}]}`, "null"),
			chunk(`{}`, `"tool_calls"`),
			usage,
			"data: [DONE]"}},
		// servers that leave the index out: every call whole, in one
		// chunk
		"noindex": {whole: probeOAWhole, stream: []string{
			chunk(`{"role":"assistant","content":"Checking both cities."}`, "null"),
			chunk(`{"tool_calls":[{"id":"call_paris","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":1,\"unit\":\"celsius\"}"}},{"id":"call_rome","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\",\"days\":2,\"unit\":\"celsius\"}"}}]}`, "null"),
			chunk(`{}`, `"tool_calls"`),
			usage,
			"data: [DONE]"}},
		// the output limit cut the second call short
		"cut": {whole: `{"id":"chatcmpl-probe2","object":"chat.completion","created":1741569952,"model":"gpt-probe-1","choices":[{"index":0,"message":{"role":"assistant","content":"Checking both cities.","tool_calls":[` +
			`{"id":"call_paris","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":1,\"unit\":\"celsius\"}"}},` +
			`{"id":"call_rome","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Ro"}}]},` +
			`"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":80,"completion_tokens":40,"total_tokens":120}}`},
		"strict": {strict: true, stream: []string{
			chunk(`{"role":"assistant","content":"Strict "}`, "null"),
			chunk(`{"content":"servers answer too."}`, `"stop"`),
			"data: [DONE]"}},
		"toolong": {status: 400, whole: `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`},
		"midstream": {stream: []string{
			chunk(`{"role":"assistant","content":""}`, "null"),
			chunk(`{"content":"Partial answer"}`, "null"),
			`data: {"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`}},
	}
}

// startProbe starts the default configuration plus the models s-ant and
// s-oa, served by the scripted upstreams of each format.
func startProbe(t *testing.T) {
	antScripts, oaScripts := probeAntScripts(), probeOAScripts()
	addErrorScripts(antScripts, true)
	addErrorScripts(oaScripts, false)
	ant := scriptedUpstream(t, antScripts)
	oa := scriptedUpstream(t, oaScripts)
	start(t, withDefaults(fmt.Sprintf(`
		provider scripted-ant %s {
			format anthropic
		}
		provider scripted-oa %s
		provider scripted-strict %[2]s {
			stream_usage off
		}
		model s-strict scripted-strict
		model s-ant scripted-ant {
			upstream_name claude-probe
		}
		model s-oa scripted-oa {
			upstream_name gpt-probe
		}
`, ant.URL, oa.URL)))
}

// probePrompt names the script that answers.
func probePrompt(name string) string { return "script:" + name + " please" }

// oaCall is a chat answer reduced to what a client acts on.
type oaCall struct{ ID, Name, Args string }

func oaCalls(m openai.ChatCompletionMessage) []oaCall {
	var out []oaCall
	for _, c := range m.ToolCalls {
		out = append(out, oaCall{c.ID, c.Function.Name, c.Function.Arguments})
	}
	return out
}

// TestTranslateProbeOpenAIClient: an OpenAI client served by the
// Anthropic-format script.
func TestTranslateProbeOpenAIClient(t *testing.T) {
	startProbe(t)
	oc := oaClient(t)

	t.Run("parallel tool calls, whole and streamed", func(t *testing.T) {
		p := chatParams("s-ant", probePrompt("tools"))
		p.Tools = []openai.ChatCompletionToolUnionParam{weatherToolOA()}
		whole, err := oc.Chat.Completions.New(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		if whole.Object != "chat.completion" || whole.Model != "claude-probe-1" || whole.ID != "msg_probe1" || whole.Created == 0 {
			t.Errorf("object %q model %q id %q created %d", whole.Object, whole.Model, whole.ID, whole.Created)
		}
		wc := whole.Choices[0]
		want := []oaCall{
			{"toolu_paris", "get_weather", `{"city":"Paris","days":1,"unit":"celsius"}`},
			{"toolu_rome", "get_weather", `{"city":"Rome","days":2,"unit":"celsius"}`},
		}
		if got := oaCalls(wc.Message); len(got) != 2 || got[0].ID != want[0].ID || got[1].ID != want[1].ID ||
			!sameJSON(got[0].Args, want[0].Args) || !sameJSON(got[1].Args, want[1].Args) {
			t.Errorf("tool calls %+v, want %+v", got, want)
		}
		if wc.Message.Content != "Checking both cities." || wc.FinishReason != "tool_calls" {
			t.Errorf("content %q finish %q", wc.Message.Content, wc.FinishReason)
		}
		if u := whole.Usage; u.PromptTokens != 80 || u.PromptTokensDetails.CachedTokens != 20 || u.CompletionTokens != 40 || u.TotalTokens != 120 {
			t.Errorf("usage %s", u.RawJSON())
		}

		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := oaAccumulate(t, oc, p)
		if s.Err != nil {
			t.Fatalf("stream: %v", s.Err)
		}
		sc := s.choice(t)
		if got, wantCalls := oaCalls(sc.Message), oaCalls(wc.Message); len(got) != len(wantCalls) {
			t.Errorf("streamed tool calls %+v, want %+v", got, wantCalls)
		} else {
			for i := range got {
				if got[i].ID != wantCalls[i].ID || got[i].Name != wantCalls[i].Name || !sameJSON(got[i].Args, wantCalls[i].Args) {
					t.Errorf("streamed tool call %d %+v, want %+v", i, got[i], wantCalls[i])
				}
			}
		}
		if sc.Message.Content != wc.Message.Content || sc.FinishReason != wc.FinishReason {
			t.Errorf("streamed content %q finish %q, want %q %q", sc.Message.Content, sc.FinishReason, wc.Message.Content, wc.FinishReason)
		}
		if s.Acc.Model != whole.Model || s.Acc.ID != whole.ID || s.Acc.Object != "chat.completion" {
			t.Errorf("streamed model %q id %q object %q", s.Acc.Model, s.Acc.ID, s.Acc.Object)
		}
		if s.Usage == nil || s.Usage.PromptTokens != 80 || s.Usage.PromptTokensDetails.CachedTokens != 20 || s.Usage.CompletionTokens != 40 {
			t.Errorf("stream usage %+v", s.Usage)
		}
	})

	t.Run("stop sequence", func(t *testing.T) {
		p := chatParams("s-ant", probePrompt("stopseq"))
		p.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("4")}
		whole, err := oc.Chat.Completions.New(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		s := oaAccumulate(t, oc, p)
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		for _, c := range []openai.ChatCompletionChoice{whole.Choices[0], s.choice(t)} {
			if c.FinishReason != "stop" || c.Message.Content != "1, 2, 3, " {
				t.Errorf("finish %q content %q, want stop and the text", c.FinishReason, c.Message.Content)
			}
		}
	})

	t.Run("response_format json_schema, whole and streamed", func(t *testing.T) {
		p := chatParams("s-ant", probePrompt("json"))
		p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
			JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "forecast", Schema: map[string]any{"type": "object"}},
		}}
		whole, err := oc.Chat.Completions.New(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		s := oaAccumulate(t, oc, p)
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		for _, c := range []openai.ChatCompletionChoice{whole.Choices[0], s.choice(t)} {
			if c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 || !sameJSON(c.Message.Content, `{"city":"Paris","days":[1,2]}`) {
				t.Errorf("finish %q, %d tool calls, content %q: want the JSON as content", c.FinishReason, len(c.Message.ToolCalls), c.Message.Content)
			}
		}
	})

	t.Run("error in the middle of the stream", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"model": "s-ant", "stream": true,
			"messages": []map[string]string{{"role": "user", "content": probePrompt("midstream")}}})
		raw := rawStream(t, "/v1/chat/completions", body)
		events := sseEvents(raw)
		last := events[len(events)-1]
		data := strings.TrimPrefix(last[len(last)-1], "data: ")
		if gjson.Get(data, "error.type").Str != "overloaded_error" || gjson.Get(data, "error.message").Str != "Overloaded" ||
			strings.Contains(raw, "[DONE]") || strings.Contains(raw, "event:") {
			t.Errorf("stream %q: want OpenAI chunks, then an OpenAI error and no [DONE]", raw)
		}
		s := oaAccumulate(t, oc, chatParams("s-ant", probePrompt("midstream")))
		if s.Err == nil || !strings.Contains(s.Err.Error(), "Overloaded") || s.choice(t).Message.Content != "Partial answer" {
			t.Errorf("the SDK got %+v and error %v; want the partial text and the error", s.Acc.Choices, s.Err)
		}
	})
}

// rawStream posts a stream request and returns what came of the
// response, which may end in an aborted connection.
func rawStream(t *testing.T, path string, body []byte) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, gatewayURL+path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// antCall is a tool_use block reduced to what a client acts on.
type antCall struct{ ID, Name, Input string }

func antCalls(m anthropic.Message) []antCall {
	var out []antCall
	for _, b := range m.Content {
		if b.Type == "tool_use" {
			out = append(out, antCall{b.ID, b.Name, string(b.Input)})
		}
	}
	return out
}

// TestTranslateProbeAnthropicClient: an Anthropic client served by the
// OpenAI-format script.
func TestTranslateProbeAnthropicClient(t *testing.T) {
	startProbe(t)
	ac := antClient(t)
	wantCalls := []antCall{
		{"call_paris", "get_weather", `{"city":"Paris","days":1,"unit":"celsius"}`},
		{"call_rome", "get_weather", `{"city":"Rome","days":2,"unit":"celsius"}`},
	}
	sameCalls := func(got, want []antCall) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i].ID != want[i].ID || got[i].Name != want[i].Name || !sameJSON(got[i].Input, want[i].Input) {
				return false
			}
		}
		return true
	}

	for _, name := range []string{"tools", "noindex"} {
		t.Run("parallel tool calls, whole and streamed: "+name, func(t *testing.T) {
			p := messageParams("s-oa", probePrompt(name))
			p.Tools = []anthropic.ToolUnionParam{weatherToolAnt()}
			whole, err := ac.Messages.New(ctxT(t), p)
			if err != nil {
				t.Fatal(err)
			}
			if whole.Model != "gpt-probe-1" || whole.ID != "chatcmpl-probe1" || whole.Type != "message" || whole.Role != "assistant" {
				t.Errorf("model %q id %q type %q role %q", whole.Model, whole.ID, whole.Type, whole.Role)
			}
			if !sameCalls(antCalls(*whole), wantCalls) || antText(*whole) != "Checking both cities." || whole.StopReason != "tool_use" {
				t.Errorf("calls %+v text %q stop %q", antCalls(*whole), antText(*whole), whole.StopReason)
			}
			if u := whole.Usage; u.InputTokens != 50 || u.CacheReadInputTokens != 30 || u.OutputTokens != 40 {
				t.Errorf("usage %s", u.RawJSON())
			}

			s := antAccumulate(t, ac, p)
			if s.Err != nil {
				t.Fatalf("stream: %v (events %v)", s.Err, s.Types)
			}
			if !sameCalls(antCalls(s.Msg), antCalls(*whole)) || antText(s.Msg) != antText(*whole) || s.Msg.StopReason != whole.StopReason {
				t.Errorf("streamed calls %+v text %q stop %q; want %+v %q %q",
					antCalls(s.Msg), antText(s.Msg), s.Msg.StopReason, antCalls(*whole), antText(*whole), whole.StopReason)
			}
			if s.Msg.Model != whole.Model || s.Msg.ID != whole.ID {
				t.Errorf("streamed model %q id %q", s.Msg.Model, s.Msg.ID)
			}
			if u := s.DeltaUsage; u.InputTokens != 50 || u.CacheReadInputTokens != 30 || u.OutputTokens != 40 {
				t.Errorf("message_delta usage %s", u.RawJSON())
			}
			if n := len(s.Types); n < 2 || s.Types[0] != "message_start" || s.Types[n-2] != "message_delta" || s.Types[n-1] != "message_stop" {
				t.Errorf("event order %v", s.Types)
			}
		})
	}

	t.Run("a tool call cut by the output limit", func(t *testing.T) {
		p := messageParams("s-oa", probePrompt("cut"))
		p.Tools = []anthropic.ToolUnionParam{weatherToolAnt()}
		whole, err := ac.Messages.New(ctxT(t), p)
		if err != nil {
			t.Fatalf("got %v, want the answer cut short", err)
		}
		if whole.StopReason != "max_tokens" || antText(*whole) != "Checking both cities." || !sameCalls(antCalls(*whole), wantCalls[:1]) {
			t.Errorf("stop %q text %q calls %+v: want max_tokens, the text and the call that is whole", whole.StopReason, antText(*whole), antCalls(*whole))
		}
	})

	t.Run("context length", func(t *testing.T) {
		_, err := ac.Messages.New(ctxT(t), messageParams("s-oa", probePrompt("toolong")))
		var aerr *anthropic.Error
		if !asError(err, &aerr) || aerr.StatusCode != 400 {
			t.Fatalf("got %v, want a 400", err)
		}
		if msg := gjson.Get(aerr.RawJSON(), "error.message").Str; !strings.HasPrefix(msg, "prompt is too long") ||
			gjson.Get(aerr.RawJSON(), "error.type").Str != "invalid_request_error" {
			t.Errorf("error %s: want Anthropic's invalid_request_error, prompt is too long", aerr.RawJSON())
		}
	})

	t.Run("error in the middle of the stream", func(t *testing.T) {
		s := antAccumulate(t, ac, messageParams("s-oa", probePrompt("midstream")))
		if s.Err == nil || !strings.Contains(s.Err.Error(), "Rate limit reached") || antText(s.Msg) != "Partial answer" {
			t.Errorf("the SDK got %q, events %v and error %v; want the partial text and the error", antText(s.Msg), s.Types, s.Err)
		}
	})
}

// TestMidStreamErrorReachesClient: an error event in the middle of a
// stream, with no candidate left to continue the answer (rescue is on,
// the default), reaches the client in its own format, translated or not;
// it is not lost in an aborted connection.
func TestMidStreamErrorReachesClient(t *testing.T) {
	startProbe(t)
	oc, ac := oaClient(t), antClient(t)
	for _, model := range []string{"s-ant", "s-oa"} {
		t.Run("openai client, "+model, func(t *testing.T) {
			s := oaAccumulate(t, oc, chatParams(model, probePrompt("midstream")))
			if s.Err == nil || !strings.Contains(s.Err.Error(), "received error while streaming") || s.choice(t).Message.Content != "Partial answer" {
				t.Errorf("the SDK got %+v and error %v; want the partial text and the upstream's error", s.Acc.Choices, s.Err)
			}
		})
		t.Run("anthropic client, "+model, func(t *testing.T) {
			s := antAccumulate(t, ac, messageParams(model, probePrompt("midstream")))
			if s.Err == nil || !strings.Contains(s.Err.Error(), "received error while streaming") || antText(s.Msg) != "Partial answer" {
				t.Errorf("the SDK got %q, events %v and error %v; want the partial text and the upstream's error", antText(s.Msg), s.Types, s.Err)
			}
		})
	}
}

// TestTranslateStreamUsageOff: a provider whose server refuses
// stream_options (stream_usage off) serves a Messages client's stream:
// the translated request does not ask for the usage chunk either.
func TestTranslateStreamUsageOff(t *testing.T) {
	startProbe(t)
	s := antAccumulate(t, antClient(t), messageParams("s-strict", probePrompt("strict")))
	if s.Err != nil || antText(s.Msg) != "Strict servers answer too." || s.Msg.StopReason != "end_turn" {
		t.Errorf("got %q (%s), error %v; want the strict server's answer", antText(s.Msg), s.Msg.StopReason, s.Err)
	}
}

// TestTranslateProbeErrors: an upstream error of each status reaches the
// client of the other format in its own shape, with the same status and
// the provider's Retry-After, streamed or not.
func TestTranslateProbeErrors(t *testing.T) {
	startProbe(t)
	oc, ac := oaClient(t, oaoption.WithMaxRetries(0)), antClient(t, antoption.WithMaxRetries(0))
	for _, e := range probeErrors {
		for _, stream := range []bool{false, true} {
			name := fmt.Sprintf("%d stream=%v", e.status, stream)
			prompt := probePrompt(fmt.Sprintf("err%d", e.status))
			t.Run("openai client "+name, func(t *testing.T) {
				var err error
				if stream {
					err = oaAccumulate(t, oc, chatParams("s-ant", prompt)).Err
				} else {
					_, err = oc.Chat.Completions.New(ctxT(t), chatParams("s-ant", prompt))
				}
				var oerr *openai.Error
				if !asError(err, &oerr) {
					t.Fatalf("got %v, want an *openai.Error", err)
				}
				if oerr.StatusCode != e.status || oerr.Type != e.antType || oerr.Message != fmt.Sprintf("scripted %d", e.status) ||
					oerr.Response.Header.Get("Retry-After") != "17" {
					t.Errorf("status %d Retry-After %q body %s", oerr.StatusCode, oerr.Response.Header.Get("Retry-After"), oerr.RawJSON())
				}
			})
			t.Run("anthropic client "+name, func(t *testing.T) {
				var err error
				if stream {
					err = antAccumulate(t, ac, messageParams("s-oa", prompt)).Err
				} else {
					_, err = ac.Messages.New(ctxT(t), messageParams("s-oa", prompt))
				}
				var aerr *anthropic.Error
				if !asError(err, &aerr) {
					t.Fatalf("got %v, want an *anthropic.Error", err)
				}
				raw := aerr.RawJSON()
				if aerr.StatusCode != e.status || gjson.Get(raw, "type").Str != "error" || gjson.Get(raw, "error.type").Str != e.antType ||
					gjson.Get(raw, "error.message").Str != fmt.Sprintf("scripted %d", e.status) || aerr.Response.Header.Get("Retry-After") != "17" {
					t.Errorf("status %d Retry-After %q body %s", aerr.StatusCode, aerr.Response.Header.Get("Retry-After"), raw)
				}
			})
		}
	}
}
