package translate

import (
	"encoding/json"
	"strings"
	"testing"
)

// The benchmarks measure the cost translation adds: per request (the
// request and its whole answer, for a typical 4 KB chat with tools) and
// per stream chunk (a text delta, a tool-argument delta).
//
//	go test ./translate -run '^$' -bench . -benchmem -count 3

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

type obj = map[string]any
type arr = []any

// benchSystem is a system prompt of a typical length.
var benchSystem = strings.Repeat("You are a travel assistant for a booking site. Answer briefly, quote prices in the user's currency, "+
	"and use the tools to look up weather, flights and hotels instead of guessing. ", 8)

func benchSchema(props ...string) obj {
	p := obj{}
	for _, name := range props {
		p[name] = obj{"type": "string", "description": "The " + name + " to look up, as the user gave it."}
	}
	return obj{"type": "object", "properties": p, "required": arr{props[0]}}
}

// benchOpenAIRequest is a Chat Completions request of about 4 KB: a
// system prompt, three tools, and a conversation with a tool call and
// its result.
var benchOpenAIRequest = mustJSON(obj{
	"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024, "temperature": 0.3, "stream": false,
	"tools": arr{
		obj{"type": "function", "function": obj{"name": "get_weather", "description": "Current weather in a city.", "parameters": benchSchema("location", "unit")}},
		obj{"type": "function", "function": obj{"name": "search_flights", "description": "Flights between two airports on a date.", "parameters": benchSchema("origin", "destination", "date")}},
		obj{"type": "function", "function": obj{"name": "search_hotels", "description": "Hotels in a city for a stay.", "parameters": benchSchema("city", "check_in", "check_out")}},
	},
	"messages": arr{
		obj{"role": "system", "content": benchSystem},
		obj{"role": "user", "content": "I'm flying from Paris to Lisbon next Friday. What's the weather like there, and can you find me a flight in the morning?"},
		obj{"role": "assistant", "content": "Let me check both.", "tool_calls": arr{
			obj{"id": "call_W1", "type": "function", "function": obj{"name": "get_weather", "arguments": `{"location":"Lisbon, Portugal","unit":"celsius"}`}},
			obj{"id": "call_F1", "type": "function", "function": obj{"name": "search_flights", "arguments": `{"origin":"CDG","destination":"LIS","date":"2025-06-13"}`}},
		}},
		obj{"role": "tool", "tool_call_id": "call_W1", "content": `{"temperature":24,"condition":"sunny","humidity":0.55,"wind_kph":12}`},
		obj{"role": "tool", "tool_call_id": "call_F1", "content": `[{"flight":"TP433","departs":"07:05","arrives":"08:45","price_eur":129},{"flight":"AF1024","departs":"09:40","arrives":"11:20","price_eur":164},{"flight":"U24761","departs":"11:55","arrives":"13:35","price_eur":88}]`},
		obj{"role": "assistant", "content": "Lisbon will be sunny, around 24°C. The earliest flight is TP433 at 07:05 (€129); AF1024 leaves at 09:40 (€164)."},
		obj{"role": "user", "content": "Great, book nothing yet, but find me a hotel near Baixa for three nights, under €150 a night, and tell me if I need a jacket in the evening."},
	},
})

// benchAnthropicRequest is the same conversation as a Messages request.
var benchAnthropicRequest = mustJSON(obj{
	"model": "gpt-4.1-2025-04-14", "max_tokens": 1024, "temperature": 0.3, "system": benchSystem,
	"tools": arr{
		obj{"name": "get_weather", "description": "Current weather in a city.", "input_schema": benchSchema("location", "unit")},
		obj{"name": "search_flights", "description": "Flights between two airports on a date.", "input_schema": benchSchema("origin", "destination", "date")},
		obj{"name": "search_hotels", "description": "Hotels in a city for a stay.", "input_schema": benchSchema("city", "check_in", "check_out")},
	},
	"messages": arr{
		obj{"role": "user", "content": "I'm flying from Paris to Lisbon next Friday. What's the weather like there, and can you find me a flight in the morning?"},
		obj{"role": "assistant", "content": arr{
			obj{"type": "text", "text": "Let me check both."},
			obj{"type": "tool_use", "id": "toolu_W1", "name": "get_weather", "input": obj{"location": "Lisbon, Portugal", "unit": "celsius"}},
			obj{"type": "tool_use", "id": "toolu_F1", "name": "search_flights", "input": obj{"origin": "CDG", "destination": "LIS", "date": "2025-06-13"}},
		}},
		obj{"role": "user", "content": arr{
			obj{"type": "tool_result", "tool_use_id": "toolu_W1", "content": `{"temperature":24,"condition":"sunny","humidity":0.55,"wind_kph":12}`},
			obj{"type": "tool_result", "tool_use_id": "toolu_F1", "content": `[{"flight":"TP433","departs":"07:05","arrives":"08:45","price_eur":129},{"flight":"AF1024","departs":"09:40","arrives":"11:20","price_eur":164},{"flight":"U24761","departs":"11:55","arrives":"13:35","price_eur":88}]`},
		}},
		obj{"role": "assistant", "content": "Lisbon will be sunny, around 24°C. The earliest flight is TP433 at 07:05 (€129); AF1024 leaves at 09:40 (€164)."},
		obj{"role": "user", "content": "Great, book nothing yet, but find me a hotel near Baixa for three nights, under €150 a night, and tell me if I need a jacket in the evening."},
	},
})

var benchAnthropicResponse = mustJSON(obj{
	"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
	"content": arr{
		obj{"type": "text", "text": "Evenings in Lisbon in June cool to about 17°C, so a light jacket is a good idea. Let me look for hotels in Baixa."},
		obj{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "search_hotels", "input": obj{"city": "Lisbon, Baixa", "check_in": "2025-06-13", "check_out": "2025-06-16"}},
	},
	"stop_reason": "tool_use", "stop_sequence": nil,
	"usage": obj{"input_tokens": 1125, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 96, "service_tier": "standard"},
})

var benchOpenAIResponse = mustJSON(obj{
	"id": "chatcmpl-BQ5mGa1tD6pD2MnzOr7ZsDhbLVjXe", "object": "chat.completion", "created": 1741569952, "model": "gpt-4.1-2025-04-14",
	"choices": arr{obj{"index": 0, "logprobs": nil, "finish_reason": "tool_calls", "message": obj{
		"role": "assistant", "refusal": nil, "annotations": arr{},
		"content": "Evenings in Lisbon in June cool to about 17°C, so a light jacket is a good idea. Let me look for hotels in Baixa.",
		"tool_calls": arr{obj{"id": "call_3f8XkP2wqz", "type": "function", "function": obj{"name": "search_hotels",
			"arguments": `{"city":"Lisbon, Baixa","check_in":"2025-06-13","check_out":"2025-06-16"}`}}},
	}}},
	"usage":        obj{"prompt_tokens": 1125, "completion_tokens": 96, "total_tokens": 1221, "prompt_tokens_details": obj{"cached_tokens": 0}},
	"service_tier": "default", "system_fingerprint": "fp_f5bdcc3276",
})

func benchRequestResponse(b *testing.B, p Pair, req, resp []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(req) + len(resp)))
	for b.Loop() {
		_, x, err := p.Request(req, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := x.Response(resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestResponse is the translation cost of one non-streamed
// request: the request body and the whole answer.
func BenchmarkRequestResponse(b *testing.B) {
	b.Run("openai_to_anthropic", func(b *testing.B) {
		benchRequestResponse(b, Lookup(OpenAI, Anthropic), benchOpenAIRequest, benchAnthropicResponse)
	})
	b.Run("anthropic_to_openai", func(b *testing.B) {
		benchRequestResponse(b, Lookup(Anthropic, OpenAI), benchAnthropicRequest, benchOpenAIResponse)
	})
}

// benchEvents feeds setup to a fresh exchange of p, then measures Event
// on the chunk, appending to a reused buffer as the handler does.
func benchEvents(b *testing.B, p Pair, req string, setup []string, chunk string) {
	_, x, err := p.Request([]byte(req), Options{})
	if err != nil {
		b.Fatal(err)
	}
	var out []byte
	for _, ev := range setup {
		if out, err = x.Event(out[:0], []byte(ev)); err != nil {
			b.Fatal(err)
		}
	}
	data := []byte(chunk)
	if out, err = x.Event(out[:0], data); err != nil || len(out) == 0 {
		b.Fatalf("chunk gave %q, %v", out, err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		out, _ = x.Event(out[:0], data)
	}
}

// BenchmarkEvent is the translation cost of one stream chunk.
func BenchmarkEvent(b *testing.B) {
	anthropicSetup := []string{
		`{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1125,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"search_hotels","input":{}}}`,
	}
	o2a := Lookup(OpenAI, Anthropic)
	const o2aReq = `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`
	b.Run("openai_to_anthropic/text_delta", func(b *testing.B) {
		benchEvents(b, o2a, o2aReq, anthropicSetup,
			`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" cool to about 17°C, so a light"}}`)
	})
	b.Run("openai_to_anthropic/tool_arguments", func(b *testing.B) {
		benchEvents(b, o2a, o2aReq, anthropicSetup,
			`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Lisbon, Ba"}}`)
	})

	const head = `{"id":"chatcmpl-BQ5mGa1tD6pD2MnzOr7ZsDhbLVjXe","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_f5bdcc3276","choices":[{"index":0,"delta":`
	const tail = `,"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Xq3"}`
	a2o := Lookup(Anthropic, OpenAI)
	const a2oReq = `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}],"stream":true}`
	b.Run("anthropic_to_openai/text_delta", func(b *testing.B) {
		benchEvents(b, a2o, a2oReq, []string{
			head + `{"role":"assistant","content":"","refusal":null}` + tail,
			head + `{"content":"Evenings"}` + tail,
		}, head+`{"content":" cool to about 17°C, so a light"}`+tail)
	})
	b.Run("anthropic_to_openai/tool_arguments", func(b *testing.B) {
		benchEvents(b, a2o, a2oReq, []string{
			head + `{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_3f8XkP2wqz","type":"function","function":{"name":"search_hotels","arguments":""}}],"refusal":null}` + tail,
		}, head+`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Lisbon, Ba"}}]}`+tail)
	})
}

func TestBenchBodiesAreTypical(t *testing.T) {
	for name, b := range map[string][]byte{"openai": benchOpenAIRequest, "anthropic": benchAnthropicRequest} {
		if n := len(b); n < 3500 || n > 4700 {
			t.Errorf("the %s benchmark request is %d bytes, want about 4 KB", name, n)
		}
	}
}
