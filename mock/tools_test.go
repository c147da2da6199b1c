package mock

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"
)

// Tools in both APIs: get_weather needs a city, get_time has no
// required property.
const (
	oaTools = `"tools":[` +
		`{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}},` +
		`{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string"},"utc":{"type":"boolean"}}}}}]`
	anTools = `"tools":[` +
		`{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}},` +
		`{"name":"get_time","input_schema":{"type":"object","properties":{"zone":{"type":"string"},"utc":{"type":"boolean"}}}}]`

	weatherArgs = `{"city":"mock"}`
	timeArgs    = `{"utc":true,"zone":"mock"}`

	userMsg = `{"role":"user","content":"What is the weather in Paris?"}`
)

func TestToolCallChoice(t *testing.T) {
	h := provision(t, &Handler{Text: "Plain text."})
	const (
		oaToolTurn = `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`
		anToolTurn = `{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]}`
	)
	for _, tc := range []struct {
		name     string
		path     string
		body     string // without the closing brace
		wantTool string // "" for a text answer
		wantArgs string
	}{
		// OpenAI chat completions
		{"chat first tool", "/v1/chat/completions", `{"messages":[` + userMsg + `],` + oaTools, "get_weather", weatherArgs},
		{"chat auto", "/v1/chat/completions", `{"tool_choice":"auto","messages":[` + userMsg + `],` + oaTools, "get_weather", weatherArgs},
		{"chat required", "/v1/chat/completions", `{"tool_choice":"required","messages":[` + userMsg + `],` + oaTools, "get_weather", weatherArgs},
		{"chat forced", "/v1/chat/completions", `{"tool_choice":{"type":"function","function":{"name":"get_time"}},"messages":[` + userMsg + `],` + oaTools, "get_time", timeArgs},
		{"chat forced unknown tool", "/v1/chat/completions", `{"tool_choice":{"type":"function","function":{"name":"other"}},"messages":[` + userMsg + `],` + oaTools, "other", `{}`},
		{"chat none", "/v1/chat/completions", `{"tool_choice":"none","messages":[` + userMsg + `],` + oaTools, "", ""},
		{"chat tool result last", "/v1/chat/completions", `{"messages":[` + userMsg + `,` + oaToolTurn + `,{"role":"tool","tool_call_id":"call_1","content":"sunny"}],` + oaTools, "", ""},
		{"chat forced after tool result", "/v1/chat/completions", `{"tool_choice":{"type":"function","function":{"name":"get_time"}},"messages":[` + userMsg + `,` + oaToolTurn + `,{"role":"tool","tool_call_id":"call_1","content":"sunny"}],` + oaTools, "", ""},
		{"chat user after tool result", "/v1/chat/completions", `{"messages":[` + userMsg + `,` + oaToolTurn + `,{"role":"tool","tool_call_id":"call_1","content":"sunny"},` + userMsg + `],` + oaTools, "get_weather", weatherArgs},
		{"chat no tools", "/v1/chat/completions", `{"messages":[` + userMsg + `]`, "", ""},
		{"chat empty tools", "/v1/chat/completions", `{"messages":[` + userMsg + `],"tools":[]`, "", ""},
		{"chat only custom tools", "/v1/chat/completions", `{"messages":[` + userMsg + `],"tools":[{"type":"custom","custom":{"name":"grammar"}}]`, "", ""},
		{"chat tool without parameters", "/v1/chat/completions", `{"messages":[` + userMsg + `],"tools":[{"type":"function","function":{"name":"ping"}}]`, "ping", `{}`},

		// Anthropic messages
		{"messages first tool", "/v1/messages", `{"max_tokens":50,"messages":[` + userMsg + `],` + anTools, "get_weather", weatherArgs},
		{"messages auto", "/v1/messages", `{"max_tokens":50,"tool_choice":{"type":"auto"},"messages":[` + userMsg + `],` + anTools, "get_weather", weatherArgs},
		{"messages any", "/v1/messages", `{"max_tokens":50,"tool_choice":{"type":"any"},"messages":[` + userMsg + `],` + anTools, "get_weather", weatherArgs},
		{"messages forced", "/v1/messages", `{"max_tokens":50,"tool_choice":{"type":"tool","name":"get_time"},"messages":[` + userMsg + `],` + anTools, "get_time", timeArgs},
		{"messages none", "/v1/messages", `{"max_tokens":50,"tool_choice":{"type":"none"},"messages":[` + userMsg + `],` + anTools, "", ""},
		{"messages tool result last", "/v1/messages", `{"max_tokens":50,"messages":[` + userMsg + `,` + anToolTurn + `,{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}],` + anTools, "", ""},
		{"messages tool result and text", "/v1/messages", `{"max_tokens":50,"messages":[` + userMsg + `,` + anToolTurn + `,{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"},{"type":"text","text":"and?"}]}],` + anTools, "", ""},
		{"messages user after tool result", "/v1/messages", `{"max_tokens":50,"messages":[` + userMsg + `,` + anToolTurn + `,{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]},{"role":"assistant","content":"Sunny."},` + userMsg + `],` + anTools, "get_weather", weatherArgs},
		{"messages server tool skipped", "/v1/messages", `{"max_tokens":50,"messages":[` + userMsg + `],"tools":[{"type":"web_search_20250305","name":"web_search"},{"type":"custom","name":"get_time","input_schema":{"type":"object","properties":{"zone":{"type":"string"}}}}]`, "get_time", `{"zone":"mock"}`},
		{"messages no tools", "/v1/messages", `{"max_tokens":50,"messages":[` + userMsg + `]`, "", ""},
		{"messages tool ignores max_tokens", "/v1/messages", `{"max_tokens":1,"messages":[` + userMsg + `],` + anTools, "get_weather", weatherArgs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, h, newRequest("POST", tc.path, tc.body+"}", "anthropic-version", "2023-06-01"))
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			body := gjson.Parse(w.Body.String())
			messages := tc.path == "/v1/messages"

			if tc.wantTool == "" {
				text, reason := body.Get("choices.0.message.content"), body.Get("choices.0.finish_reason")
				if messages {
					text, reason = body.Get("content.0.text"), body.Get("stop_reason")
				}
				if text.String() != "Plain text." || (reason.String() != "stop" && reason.String() != "end_turn") {
					t.Errorf("want the text answer, got %s", body.Raw)
				}
				if body.Get("choices.0.message.tool_calls").Exists() || body.Get(`content.#(type=="tool_use")`).Exists() {
					t.Errorf("text answer has a tool call: %s", body.Raw)
				}
				return
			}

			var id, name, args, reason string
			if messages {
				if n := body.Get("content.#").Int(); n != 1 {
					t.Fatalf("%d content blocks: %s", n, body.Raw)
				}
				block := body.Get("content.0")
				if block.Get("type").String() != "tool_use" {
					t.Fatalf("not a tool_use block: %s", block.Raw)
				}
				id, name, args = block.Get("id").String(), block.Get("name").String(), block.Get("input").Raw
				reason = body.Get("stop_reason").String()
				if reason != "tool_use" || !strings.HasPrefix(id, "toolu_") {
					t.Errorf("bad tool answer: %s", body.Raw)
				}
			} else {
				msg := body.Get("choices.0.message")
				if msg.Get("content").Type != gjson.Null || !msg.Get("content").Exists() || msg.Get("role").String() != "assistant" {
					t.Errorf("message content is not null: %s", msg.Raw)
				}
				if n := msg.Get("tool_calls.#").Int(); n != 1 {
					t.Fatalf("%d tool calls: %s", n, msg.Raw)
				}
				call := msg.Get("tool_calls.0")
				if call.Get("type").String() != "function" {
					t.Errorf("tool call type: %s", call.Raw)
				}
				if call.Get("function.arguments").Type != gjson.String {
					t.Errorf("arguments are not a string: %s", call.Raw)
				}
				id, name, args = call.Get("id").String(), call.Get("function.name").String(), call.Get("function.arguments").String()
				reason = body.Get("choices.0.finish_reason").String()
				if reason != "tool_calls" || !strings.HasPrefix(id, "call_") {
					t.Errorf("bad tool answer: %s", body.Raw)
				}
			}
			if name != tc.wantTool || args != tc.wantArgs {
				t.Errorf("called %s(%s), want %s(%s)", name, args, tc.wantTool, tc.wantArgs)
			}
		})
	}

	t.Run("random ids", func(t *testing.T) {
		body := `{"messages":[` + userMsg + `],` + oaTools + `}`
		a := gjson.Get(serve(t, h, newRequest("POST", "/v1/chat/completions", body)).Body.String(), "choices.0.message.tool_calls.0.id")
		b := gjson.Get(serve(t, h, newRequest("POST", "/v1/chat/completions", body)).Body.String(), "choices.0.message.tool_calls.0.id")
		if a.String() == b.String() || len(a.String()) <= len("call_") {
			t.Errorf("ids %q and %q", a, b)
		}
	})
}

func TestMockArguments(t *testing.T) {
	for _, tc := range []struct {
		name, schema, want string
	}{
		{"no schema", ``, `{}`},
		{"no properties", `{"type":"object"}`, `{}`},
		{"required only", `{"properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["b"]}`, `{"b":1}`},
		{"all when none required", `{"properties":{"a":{"type":"string"},"b":{"type":"integer"}}}`, `{"a":"mock","b":1}`},
		{"empty required", `{"properties":{"a":{"type":"string"}},"required":[]}`, `{"a":"mock"}`},
		{"every type", `{"properties":{
			"s":{"type":"string"},"i":{"type":"integer"},"n":{"type":"number"},"b":{"type":"boolean"},
			"a":{"type":"array","items":{"type":"string"}},"o":{"type":"object","properties":{"x":{"type":"string"}}},
			"z":{"type":"null"},"u":{}}}`,
			`{"a":[],"b":true,"i":1,"n":1,"o":{},"s":"mock","u":"mock","z":null}`},
		{"sorted keys", `{"properties":{"zeta":{"type":"string"},"alpha":{"type":"string"},"mid":{"type":"string"}},"required":["zeta","alpha","mid"]}`,
			`{"alpha":"mock","mid":"mock","zeta":"mock"}`},
		{"nullable type", `{"properties":{"a":{"type":["null","integer"]}},"required":["a"]}`, `{"a":1}`},
		{"enum", `{"properties":{"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["unit"]}`, `{"unit":"celsius"}`},
		{"const", `{"properties":{"v":{"const":2}},"required":["v"]}`, `{"v":2}`},
		{"required but undescribed", `{"properties":{},"required":["x"]}`, `{"x":"mock"}`},
		{"odd key", `{"properties":{"a.b":{"type":"integer"},"c*":{"type":"boolean"}}}`, `{"a.b":1,"c*":true}`},
		{"html characters", `{"properties":{"<tag>&":{"type":"string"}}}`, `{"<tag>&":"mock"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(marshal(mockArguments(gjson.Parse(tc.schema)))); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSplitArguments(t *testing.T) {
	for _, args := range []string{`{}`, `{"a":1}`, weatherArgs, timeArgs, `{"städte":"Zürich, Köln","emoji":"☀️🌧"}`} {
		pieces := splitArguments(args)
		if len(pieces) < 2 {
			t.Errorf("%s: %d pieces, want at least 2", args, len(pieces))
		}
		if got := strings.Join(pieces, ""); got != args {
			t.Errorf("pieces %q join to %s, want %s", pieces, got, args)
		}
		for _, p := range pieces {
			if p == "" || !utf8.ValidString(p) || len(p) > 4+utf8.UTFMax-1 {
				t.Errorf("%s: bad piece %q", args, p)
			}
		}
	}
}

// toolStream is what a tool-call stream carried.
type toolStream struct {
	id, name, args, reason string
	pieces                 int   // argument chunks
	prompt, completion     int64 // usage
	cached, cacheWrite     int64
}

// readChatToolStream reassembles a chat completions tool-call stream.
func readChatToolStream(t *testing.T, body string) toolStream {
	t.Helper()
	var s toolStream
	data := sseData(t, body)
	if len(data) == 0 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]:\n%s", body)
	}
	for i, d := range data[:len(data)-1] {
		ev := gjson.Parse(d)
		if ev.Get("object").String() != "chat.completion.chunk" {
			t.Errorf("event %d is not a chunk: %s", i, d)
		}
		if u := ev.Get("usage"); u.Exists() {
			s.prompt, s.completion = u.Get("prompt_tokens").Int(), u.Get("completion_tokens").Int()
			s.cached = u.Get("prompt_tokens_details.cached_tokens").Int()
			continue
		}
		delta := ev.Get("choices.0.delta")
		if delta.Get("content").String() != "" {
			t.Errorf("tool-call stream has text: %s", d)
		}
		if call := delta.Get("tool_calls.0"); call.Exists() {
			if call.Get("index").Int() != 0 {
				t.Errorf("tool call index: %s", d)
			}
			if v := call.Get("id").String(); v != "" {
				if i != 0 || delta.Get("role").String() != "assistant" || call.Get("type").String() != "function" {
					t.Errorf("the tool call is not introduced in the first chunk: %s", d)
				}
				s.id, s.name = v, call.Get("function.name").String()
			} else {
				s.pieces++
			}
			s.args += call.Get("function.arguments").String()
		}
		if r := ev.Get("choices.0.finish_reason").String(); r != "" {
			s.reason = r
		}
	}
	return s
}

// readMessageToolStream reassembles a messages tool-call stream and
// checks its event sequence.
func readMessageToolStream(t *testing.T, body string) toolStream {
	t.Helper()
	var s toolStream
	var names []string
	for line := range strings.Lines(body) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "event: "); ok {
			names = append(names, name)
		}
	}
	for _, d := range sseData(t, body) {
		ev := gjson.Parse(d)
		switch ev.Get("type").String() {
		case "message_start":
			u := ev.Get("message.usage")
			s.prompt = u.Get("input_tokens").Int() + u.Get("cache_read_input_tokens").Int() + u.Get("cache_creation_input_tokens").Int()
			s.cached, s.cacheWrite = u.Get("cache_read_input_tokens").Int(), u.Get("cache_creation_input_tokens").Int()
		case "content_block_start":
			b := ev.Get("content_block")
			if b.Get("type").String() != "tool_use" || b.Get("input").Raw != "{}" || ev.Get("index").Int() != 0 {
				t.Errorf("content_block_start: %s", d)
			}
			s.id, s.name = b.Get("id").String(), b.Get("name").String()
		case "content_block_delta":
			if ev.Get("delta.type").String() != "input_json_delta" {
				t.Errorf("delta: %s", d)
			}
			s.args += ev.Get("delta.partial_json").String()
			s.pieces++
		case "message_delta":
			s.reason = ev.Get("delta.stop_reason").String()
			if !ev.Get("delta.stop_sequence").Exists() {
				t.Errorf("message_delta lacks stop_sequence: %s", d)
			}
			u := ev.Get("usage")
			s.completion = u.Get("output_tokens").Int()
			if in := u.Get("input_tokens").Int() + u.Get("cache_read_input_tokens").Int() + u.Get("cache_creation_input_tokens").Int(); in != s.prompt ||
				u.Get("cache_read_input_tokens").Int() != s.cached || u.Get("cache_creation_input_tokens").Int() != s.cacheWrite {
				t.Errorf("message_delta usage differs from message_start's: %s", d)
			}
		}
	}
	want := "message_start content_block_start ping" + strings.Repeat(" content_block_delta", s.pieces) +
		" content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	return s
}

// TestToolCallStreams checks that streamed tool calls carry the same
// call and usage as the non-streamed ones.
func TestToolCallStreams(t *testing.T) {
	for _, tc := range []struct {
		name, path, body string
		cached, write    int
		wantTool         string
		wantArgs         string
	}{
		{"chat", "/v1/chat/completions", `{"model":"m","messages":[` + userMsg + `],` + oaTools, 0, 0, "get_weather", weatherArgs},
		{"chat forced, cached", "/v1/chat/completions", `{"model":"m","tool_choice":{"type":"function","function":{"name":"get_time"}},"messages":[` + userMsg + `],` + oaTools, 3, 2, "get_time", timeArgs},
		{"messages", "/v1/messages", `{"model":"m","max_tokens":50,"messages":[` + userMsg + `],` + anTools, 0, 0, "get_weather", weatherArgs},
		{"messages forced, cached", "/v1/messages", `{"model":"m","max_tokens":50,"tool_choice":{"type":"tool","name":"get_time"},"messages":[` + userMsg + `],` + anTools, 3, 2, "get_time", timeArgs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provision(t, &Handler{CachedTokens: tc.cached, CacheWriteTokens: tc.write})
			messages := tc.path == "/v1/messages"
			post := func(body string) string {
				t.Helper()
				w := serve(t, h, newRequest("POST", tc.path, body, "anthropic-version", "2023-06-01"))
				if w.Code != 200 {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return w.Body.String()
			}

			full := gjson.Parse(post(tc.body + "}"))
			var want toolStream
			if messages {
				u := full.Get("usage")
				want = toolStream{
					name:       full.Get("content.0.name").String(),
					args:       full.Get("content.0.input").Raw,
					reason:     full.Get("stop_reason").String(),
					prompt:     u.Get("input_tokens").Int() + u.Get("cache_read_input_tokens").Int() + u.Get("cache_creation_input_tokens").Int(),
					completion: u.Get("output_tokens").Int(),
					cached:     u.Get("cache_read_input_tokens").Int(),
					cacheWrite: u.Get("cache_creation_input_tokens").Int(),
				}
			} else {
				u := full.Get("usage")
				want = toolStream{
					name:       full.Get("choices.0.message.tool_calls.0.function.name").String(),
					args:       full.Get("choices.0.message.tool_calls.0.function.arguments").String(),
					reason:     full.Get("choices.0.finish_reason").String(),
					prompt:     u.Get("prompt_tokens").Int(),
					completion: u.Get("completion_tokens").Int(),
					cached:     u.Get("prompt_tokens_details.cached_tokens").Int(),
				}
				if u.Get("total_tokens").Int() != want.prompt+want.completion {
					t.Errorf("total_tokens: %s", u.Raw)
				}
			}
			if want.name != tc.wantTool || want.args != tc.wantArgs {
				t.Fatalf("non-stream called %s(%s), want %s(%s)", want.name, want.args, tc.wantTool, tc.wantArgs)
			}
			if want.completion < 1 || want.cached != int64(tc.cached) {
				t.Errorf("non-stream usage: %+v", want)
			}

			var got toolStream
			if messages {
				got = readMessageToolStream(t, post(tc.body+`,"stream":true}`))
			} else {
				got = readChatToolStream(t, post(tc.body+`,"stream":true,"stream_options":{"include_usage":true}}`))
				want.cacheWrite = 0
			}
			if got.pieces < 2 {
				t.Errorf("arguments in %d pieces, want at least 2", got.pieces)
			}
			if int64(got.pieces) != want.completion {
				t.Errorf("%d argument chunks, but %d completion tokens", got.pieces, want.completion)
			}
			if !strings.HasPrefix(got.id, map[bool]string{true: "toolu_", false: "call_"}[messages]) {
				t.Errorf("tool call id %q", got.id)
			}
			got.id, got.pieces = "", 0
			if got != want {
				t.Errorf("stream and non-stream differ:\n stream %+v\nanswer %+v", got, want)
			}
		})
	}
}

func TestToolCallsWithSDKs(t *testing.T) {
	h := provision(t, &Handler{Text: "It is sunny.", CachedTokens: 2})
	srv := startServer(t, h)
	ctx := context.Background()

	t.Run("openai", func(t *testing.T) {
		client := openAIClient(srv)
		weather := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name: "get_weather",
			Parameters: openai.FunctionParameters{
				"type":       "object",
				"properties": map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}},
				"required":   []string{"city", "days"},
			},
		})
		params := openai.ChatCompletionNewParams{
			Model:    "gpt-test",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
			Tools:    []openai.ChatCompletionToolUnionParam{weather},
		}

		resp, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		choice := resp.Choices[0]
		if choice.FinishReason != "tool_calls" || len(choice.Message.ToolCalls) != 1 {
			t.Fatalf("not a tool call: %s", resp.RawJSON())
		}
		call := choice.Message.ToolCalls[0]
		if call.Function.Name != "get_weather" || call.Function.Arguments != `{"city":"mock","days":1}` || call.Type != "function" {
			t.Errorf("bad tool call: %s", call.RawJSON())
		}
		var args struct {
			City string `json:"city"`
			Days int    `json:"days"`
		}
		if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil || args.City != "mock" || args.Days != 1 {
			t.Errorf("arguments %s: %+v, %v", call.Function.Arguments, args, err)
		}
		if resp.Usage.PromptTokensDetails.CachedTokens != 2 {
			t.Errorf("usage: %s", resp.Usage.RawJSON())
		}

		p := params
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		var finished []openai.FinishedChatCompletionToolCall
		var usage openai.CompletionUsage
		for stream.Next() {
			chunk := stream.Current()
			acc.AddChunk(chunk)
			if tc, ok := acc.JustFinishedToolCall(); ok {
				finished = append(finished, tc)
			}
			if chunk.JSON.Usage.Valid() {
				usage = chunk.Usage
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		stream.Close()
		sc := acc.Choices[0]
		if sc.FinishReason != "tool_calls" || len(sc.Message.ToolCalls) != 1 || sc.Message.Content != "" {
			t.Fatalf("accumulated %+v", sc)
		}
		if got := sc.Message.ToolCalls[0]; got.Function.Name != call.Function.Name || got.Function.Arguments != call.Function.Arguments ||
			!strings.HasPrefix(got.ID, "call_") || got.Type != "function" {
			t.Errorf("streamed call %+v, want %+v", got.Function, call.Function)
		}
		if len(finished) != 1 || finished[0].Arguments != call.Function.Arguments || finished[0].ID != sc.Message.ToolCalls[0].ID {
			t.Errorf("JustFinishedToolCall gave %+v", finished)
		}
		if usage.PromptTokens != resp.Usage.PromptTokens || usage.CompletionTokens != resp.Usage.CompletionTokens ||
			usage.PromptTokensDetails.CachedTokens != 2 {
			t.Errorf("stream usage %s, non-stream %s", usage.RawJSON(), resp.Usage.RawJSON())
		}

		// the round trip: the tool's result gets a text answer
		params.Messages = append(params.Messages, choice.Message.ToParam(), openai.ToolMessage("sunny, 24°C", call.ID))
		final, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if final.Choices[0].Message.Content != "It is sunny." || final.Choices[0].FinishReason != "stop" || len(final.Choices[0].Message.ToolCalls) != 0 {
			t.Errorf("answer to the tool result: %s", final.RawJSON())
		}
	})

	t.Run("anthropic", func(t *testing.T) {
		client := anthropicClient(srv)
		weather := anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
			Properties: map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}},
			Required:   []string{"city"},
		}, "get_weather")
		clock := anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
			Properties: map[string]any{"zone": map[string]any{"type": "string"}},
		}, "get_time")
		params := anthropic.MessageNewParams{
			Model:      "claude-test",
			MaxTokens:  100,
			Messages:   []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is the weather in Paris?"))},
			Tools:      []anthropic.ToolUnionParam{clock, weather},
			ToolChoice: anthropic.ToolChoiceUnionParam{OfTool: &anthropic.ToolChoiceToolParam{Name: "get_weather"}},
		}

		msg, err := client.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if msg.StopReason != "tool_use" || len(msg.Content) != 1 {
			t.Fatalf("not a tool call: %s", msg.RawJSON())
		}
		use := msg.Content[0].AsToolUse()
		if use.Name != "get_weather" || string(use.Input) != weatherArgs || !strings.HasPrefix(use.ID, "toolu_") {
			t.Errorf("bad tool_use: %s", use.RawJSON())
		}
		if msg.Usage.CacheReadInputTokens != 2 || msg.Usage.CacheCreationInputTokens != 0 || msg.Usage.OutputTokens < 1 {
			t.Errorf("usage: %s", msg.Usage.RawJSON())
		}

		stream := client.Messages.NewStreaming(ctx, params)
		var acc anthropic.Message
		for stream.Next() {
			if err := acc.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		stream.Close()
		if acc.StopReason != "tool_use" || len(acc.Content) != 1 {
			t.Fatalf("accumulated %s", acc.RawJSON())
		}
		if got := acc.Content[0].AsToolUse(); got.Name != use.Name || string(got.Input) != string(use.Input) {
			t.Errorf("streamed %s(%s), want %s(%s)", got.Name, got.Input, use.Name, use.Input)
		}
		if acc.Usage.InputTokens != msg.Usage.InputTokens || acc.Usage.OutputTokens != msg.Usage.OutputTokens ||
			acc.Usage.CacheReadInputTokens != 2 {
			t.Errorf("stream usage %+v, non-stream %s", acc.Usage, msg.Usage.RawJSON())
		}

		// the round trip: the tool's result gets a text answer
		params.Messages = append(params.Messages, msg.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "sunny, 24°C", false)))
		final, err := client.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if len(final.Content) != 1 || final.Content[0].Text != "It is sunny." || final.StopReason != "end_turn" {
			t.Errorf("answer to the tool result: %s", final.RawJSON())
		}
	})
}

func TestCachedTokens(t *testing.T) {
	// "What is the weather in Paris?" is 29 bytes: 8 tokens
	const prompt = 8
	chat := `{"model":"m","messages":[` + userMsg + `]`
	msgs := `{"model":"m","max_tokens":50,"messages":[` + userMsg + `]`
	for _, tc := range []struct {
		name          string
		cached, write int
		path, body    string
		want          map[string]int64 // gjson path: value, in the answer
	}{
		{"chat none", 0, 0, "/v1/chat/completions", chat, map[string]int64{
			"usage.prompt_tokens": prompt, "usage.prompt_tokens_details.cached_tokens": 0}},
		{"chat cached", 5, 0, "/v1/chat/completions", chat, map[string]int64{
			"usage.prompt_tokens": prompt, "usage.prompt_tokens_details.cached_tokens": 5, "usage.total_tokens": prompt + 3}},
		{"chat ignores writes", 5, 2, "/v1/chat/completions", chat, map[string]int64{
			"usage.prompt_tokens": prompt, "usage.prompt_tokens_details.cached_tokens": 5}},
		{"chat cache above the prompt", 20, 0, "/v1/chat/completions", chat, map[string]int64{
			"usage.prompt_tokens": 20, "usage.prompt_tokens_details.cached_tokens": 20}},
		{"chat tool call", 5, 0, "/v1/chat/completions", chat + "," + oaTools, map[string]int64{
			"usage.prompt_tokens": prompt, "usage.prompt_tokens_details.cached_tokens": 5}},
		{"messages none", 0, 0, "/v1/messages", msgs, map[string]int64{
			"usage.input_tokens": prompt, "usage.cache_read_input_tokens": 0, "usage.cache_creation_input_tokens": 0}},
		{"messages cached", 5, 0, "/v1/messages", msgs, map[string]int64{
			"usage.input_tokens": prompt - 5, "usage.cache_read_input_tokens": 5, "usage.cache_creation_input_tokens": 0}},
		{"messages cached and written", 5, 2, "/v1/messages", msgs, map[string]int64{
			"usage.input_tokens": prompt - 7, "usage.cache_read_input_tokens": 5, "usage.cache_creation_input_tokens": 2}},
		{"messages written", 0, 8, "/v1/messages", msgs, map[string]int64{
			"usage.input_tokens": 0, "usage.cache_read_input_tokens": 0, "usage.cache_creation_input_tokens": 8}},
		{"messages cache above the prompt", 10, 4, "/v1/messages", msgs, map[string]int64{
			"usage.input_tokens": 0, "usage.cache_read_input_tokens": 10, "usage.cache_creation_input_tokens": 4}},
		{"messages tool call", 5, 0, "/v1/messages", msgs + "," + anTools, map[string]int64{
			"usage.input_tokens": prompt - 5, "usage.cache_read_input_tokens": 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provision(t, &Handler{Text: "one two three", CachedTokens: tc.cached, CacheWriteTokens: tc.write})
			post := func(body string) string {
				w := serve(t, h, newRequest("POST", tc.path, body, "anthropic-version", "2023-06-01"))
				if w.Code != 200 {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return w.Body.String()
			}
			body := post(tc.body + "}")
			for path, want := range tc.want {
				if got := gjson.Get(body, path); !got.Exists() || got.Int() != want {
					t.Errorf("%s = %s, want %d in %s", path, got.Raw, want, body)
				}
			}

			// streams report the same usage
			var events []gjson.Result
			if tc.path == "/v1/messages" {
				data := sseData(t, post(tc.body+`,"stream":true}`))
				events = []gjson.Result{gjson.Get(data[0], "message"), gjson.Parse(data[len(data)-2])}
			} else {
				data := sseData(t, post(tc.body+`,"stream":true,"stream_options":{"include_usage":true}}`))
				events = []gjson.Result{gjson.Parse(data[len(data)-2])}
			}
			for _, ev := range events {
				for path, want := range tc.want {
					if path == "usage.total_tokens" {
						continue
					}
					if got := ev.Get(path); !got.Exists() || got.Int() != want {
						t.Errorf("stream: %s = %s, want %d in %s", path, got.Raw, want, ev.Raw)
					}
				}
			}
		})
	}

	t.Run("other APIs unchanged", func(t *testing.T) {
		h := provision(t, &Handler{CachedTokens: 5, CacheWriteTokens: 2})
		for _, tc := range []struct {
			path, body, usage string
		}{
			{"/v1/completions", `{"prompt":"hi"}`, `{"completion_tokens":7,"prompt_tokens":1,"total_tokens":8}`},
			{"/v1/embeddings", `{"input":"hi"}`, `{"prompt_tokens":1,"total_tokens":1}`},
			{"/v1/responses", `{"input":"hi"}`, `{"input_tokens":1,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":8}`},
		} {
			body := serve(t, h, newRequest("POST", tc.path, tc.body)).Body.String()
			if got := gjson.Get(body, "usage").Raw; got != tc.usage {
				t.Errorf("%s: usage %s, want %s", tc.path, got, tc.usage)
			}
		}
	})
}

// toolChunks counts the argument chunks in a tool-call stream of
// either API.
func toolChunks(body string) int {
	n := 0
	for line := range strings.Lines(body) {
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		if !ok || !gjson.Valid(data) {
			continue
		}
		ev := gjson.Parse(data)
		call := ev.Get("choices.0.delta.tool_calls.0")
		if (call.Exists() && !call.Get("id").Exists()) || ev.Get("delta.type").String() == "input_json_delta" {
			n++
		}
	}
	return n
}

func TestToolCallFaults(t *testing.T) {
	chat := `{"model":"m","stream":true,"messages":[` + userMsg + `],` + oaTools + `}`
	msgs := `{"model":"m","stream":true,"max_tokens":50,"messages":[` + userMsg + `],` + anTools + `}`
	// weatherArgs comes in 4 pieces
	const pieces = 4

	for _, tc := range []struct {
		name, spec, path, body string
		aborts                 bool
		wantChunks             int
		want, notWant          []string
	}{
		{"chat cut", "cut,after=1", "/v1/chat/completions", chat, true, 1,
			[]string{`"name":"get_weather"`}, []string{"[DONE]", `"finish_reason":"tool_calls"`}},
		{"chat cut before the arguments", "cut,after=0", "/v1/chat/completions", chat, true, 0,
			[]string{`"name":"get_weather"`}, []string{"[DONE]"}},
		{"chat cut after the arguments", "cut,after=100", "/v1/chat/completions", chat, true, pieces,
			nil, []string{"[DONE]", `"finish_reason":"tool_calls"`}},
		{"messages cut", "cut", "/v1/messages", msgs, true, 2,
			[]string{"event: content_block_start"}, []string{"content_block_stop", "message_stop"}},
		{"chat malformed", "malformed,after=2", "/v1/chat/completions", chat, false, pieces,
			[]string{"data: " + malformedData + "\n\n", "[DONE]"}, nil},
		{"messages malformed", "malformed,after=1", "/v1/messages", msgs, false, pieces,
			[]string{"event: content_block_delta\ndata: " + malformedData + "\n\n", "message_stop"}, nil},
		{"chat no_done", "no_done", "/v1/chat/completions", chat, false, pieces,
			[]string{`"finish_reason":"tool_calls"`}, []string{"[DONE]"}},
		{"messages no_done", "no_done", "/v1/messages", msgs, false, pieces,
			[]string{`"stop_reason":"tool_use"`}, []string{"message_stop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provision(t, &Handler{Faults: []string{tc.spec}})
			r := newRequest("POST", tc.path, tc.body, "anthropic-version", "2023-06-01")
			var body string
			if tc.aborts {
				body = serveAborting(t, h, r).Body.String()
			} else {
				body = serve(t, h, r).Body.String()
			}
			if got := toolChunks(body); got != tc.wantChunks {
				t.Errorf("%d argument chunks, want %d:\n%s", got, tc.wantChunks, body)
			}
			for _, s := range tc.want {
				if !strings.Contains(body, s) {
					t.Errorf("stream lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tc.notWant {
				if strings.Contains(body, s) {
					t.Errorf("stream has %q:\n%s", s, body)
				}
			}
			if f, _ := parseFault(tc.spec); f.kind == faultMalformed {
				i := strings.Index(body, "data: "+malformedData+"\n\n")
				if got := toolChunks(body[:i]); got != f.after {
					t.Errorf("malformed event after %d chunks, want %d", got, f.after)
				}
			}
		})
	}

	t.Run("slow_first_token", func(t *testing.T) {
		const delay = 80 * time.Millisecond
		h := provision(t, &Handler{Faults: []string{"slow_first_token,delay=80ms"}})
		srv := startServer(t, h)
		headers, first := streamTimes(t, srv, "/v1/chat/completions", chat)
		if headers >= delay || first < delay {
			t.Errorf("headers after %v, first event after %v; want the delay between them", headers, first)
		}
	})

	t.Run("non-stream cut", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"cut"}})
		body := strings.Replace(chat, `"stream":true,`, "", 1)
		w := serveAborting(t, h, newRequest("POST", "/v1/chat/completions", body))
		if w.Body.Len() == 0 || gjson.Valid(w.Body.String()) {
			t.Errorf("want half a JSON body, got %q", w.Body)
		}
	})

	t.Run("SDKs see the cut", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"cut,after=2"}})
		srv := startServer(t, h)
		ctx := context.Background()

		oaClient, anClient := openAIClient(srv), anthropicClient(srv)
		oa := oaClient.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: "m",
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "f"})},
		})
		var acc openai.ChatCompletionAccumulator
		for oa.Next() {
			acc.AddChunk(oa.Current())
		}
		if err := oa.Err(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("openai stream error = %v, want unexpected EOF", err)
		}
		oa.Close()
		if len(acc.Choices) != 1 || len(acc.Choices[0].Message.ToolCalls) != 1 || acc.Choices[0].Message.ToolCalls[0].Function.Arguments != "{}" {
			t.Errorf("accumulated before the cut: %+v", acc.Choices)
		}

		an := anClient.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
			Model: "m", MaxTokens: 10,
			Tools: []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{}, "f")},
		})
		for an.Next() {
		}
		if err := an.Err(); err == nil {
			t.Error("anthropic stream did not fail")
		}
		an.Close()
	})
}

func TestToolCallPacing(t *testing.T) {
	// weatherArgs comes in 4 pieces: 3 gaps of 25ms when streamed,
	// 4 tokens of 25ms before a non-streamed answer
	h := provision(t, &Handler{TokensPerSecond: 40})
	body := `{"model":"m","messages":[` + userMsg + `],` + oaTools
	for _, tc := range []struct {
		body string
		min  time.Duration
	}{
		{body + "}", 100 * time.Millisecond},
		{body + `,"stream":true}`, 75 * time.Millisecond},
	} {
		start := time.Now()
		serve(t, h, newRequest("POST", "/v1/chat/completions", tc.body))
		if el := time.Since(start); el < tc.min {
			t.Errorf("%s: answered after %v, want at least %v", tc.body, el, tc.min)
		}
	}
}
