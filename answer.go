package llmroute

import (
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// readAnswer reads what the checks and votes see of a whole answer in
// the client's format (endpoint's): its text, finish reason (refusal
// for any answer refused judges one, such as OpenAI's message.refusal
// with finish_reason stop), refusal and tool calls.
func readAnswer(endpoint string, body []byte) strategies.Answer {
	root := gjson.ParseBytes(body)
	var a strategies.Answer
	var text, tools strings.Builder
	switch endpoint {
	case "/chat/completions":
		ch := root.Get("choices.0")
		msg := ch.Get("message")
		partsText(&text, msg.Get("content"))
		a.Refusal = msg.Get("refusal").Str
		for _, tc := range msg.Get("tool_calls").Array() {
			toolLine(&tools, tc.Get("function.name").Str, tc.Get("function.arguments").Str)
		}
		a.Finish = ch.Get("finish_reason").Str
	case "/completions":
		ch := root.Get("choices.0")
		text.WriteString(ch.Get("text").Str)
		a.Finish = ch.Get("finish_reason").Str
	case "/messages":
		for _, b := range root.Get("content").Array() {
			switch b.Get("type").Str {
			case "text":
				text.WriteString(b.Get("text").Str)
			case "tool_use":
				toolLine(&tools, b.Get("name").Str, b.Get("input").Raw)
			}
		}
		switch sr := root.Get("stop_reason").Str; sr {
		case "max_tokens", "model_context_window_exceeded":
			a.Finish = "length"
		case "tool_use":
			a.Finish = "tool_calls"
		case "refusal":
			a.Finish = "refusal"
		default:
			a.Finish = "stop"
		}
	case "/responses":
		for _, item := range root.Get("output").Array() {
			switch item.Get("type").Str {
			case "message":
				for _, part := range item.Get("content").Array() {
					switch part.Get("type").Str {
					case "output_text":
						text.WriteString(part.Get("text").Str)
					case "refusal":
						a.Refusal += part.Get("refusal").Str
					}
				}
			case "function_call":
				toolLine(&tools, item.Get("name").Str, item.Get("arguments").Str)
			}
		}
		a.Finish = "stop"
		if root.Get("status").Str == "incomplete" {
			a.Finish = "length"
			if r := root.Get("incomplete_details.reason").Str; r == "content_filter" {
				a.Finish = r
			}
		}
	}
	if a.Finish != "content_filter" && refused(root) {
		a.Finish = "refusal" // (refused is the one judge of a refusal)
	}
	a.Text, a.ToolCalls = text.String(), tools.String()
	return a
}

// partsText writes the text of a message content: a string, or the
// text of its text parts.
func partsText(b *strings.Builder, content gjson.Result) {
	if content.Type == gjson.String {
		b.WriteString(content.Str)
		return
	}
	for _, p := range content.Array() {
		if p.Get("type").Str == "text" {
			b.WriteString(p.Get("text").Str)
		}
	}
}

// toolLine writes one tool call: its name and compacted arguments.
func toolLine(b *strings.Builder, name, args string) {
	b.WriteString(name)
	b.WriteByte(' ')
	if gjson.Valid(args) {
		args = string(compactJSON([]byte(args)))
	}
	b.WriteString(args)
	b.WriteByte('\n')
}

// compactJSON removes the spaces between a JSON text's tokens.
func compactJSON(v []byte) []byte {
	return []byte(gjson.ParseBytes(v).Get("@ugly").Raw)
}

// withUsage sets the usage object of an answer in the client's format
// (endpoint's) to u.
func withUsage(endpoint string, body []byte, u Usage) []byte {
	type field struct {
		path  string
		value int64
		set   bool // set even when 0
	}
	var fields []field
	switch endpoint {
	case "/chat/completions", "/completions":
		fields = []field{
			{"usage.prompt_tokens", u.PromptTokens, true},
			{"usage.completion_tokens", u.CompletionTokens, true},
			{"usage.total_tokens", u.PromptTokens + u.CompletionTokens, true},
			{"usage.prompt_tokens_details.cached_tokens", u.CacheReadTokens, false},
			{"usage.cache_creation_input_tokens", u.CacheWriteTokens, false},
		}
	case "/messages":
		fields = []field{
			{"usage.input_tokens", u.PromptTokens - u.CacheReadTokens - u.CacheWriteTokens, true},
			{"usage.output_tokens", u.CompletionTokens, true},
			{"usage.cache_read_input_tokens", u.CacheReadTokens, false},
			{"usage.cache_creation_input_tokens", u.CacheWriteTokens, false},
		}
	case "/responses":
		fields = []field{
			{"usage.input_tokens", u.PromptTokens, true},
			{"usage.output_tokens", u.CompletionTokens, true},
			{"usage.total_tokens", u.PromptTokens + u.CompletionTokens, true},
			{"usage.input_tokens_details.cached_tokens", u.CacheReadTokens, false},
		}
	}
	for _, f := range fields {
		if !f.set && f.value == 0 && !gjson.GetBytes(body, f.path).Exists() {
			continue
		}
		if out, err := sjson.SetBytes(body, f.path, f.value); err == nil {
			body = out
		}
	}
	return body
}
