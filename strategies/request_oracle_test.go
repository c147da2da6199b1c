package strategies

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/tokens"
)

// The reader of the prompt before it read the body in place: gjson's,
// kept as the oracle FuzzReadPrompt holds ReadPrompt to.

// gjsonReadPrompt is ReadPrompt as it was, on gjson.
func gjsonReadPrompt(req *Request) {
	root := gjson.ParseBytes(req.Body) // copies the body
	if !root.IsObject() {
		return
	}

	// The system prompt goes first whatever the order of the keys.
	var w oldWalk
	var messages, system, instructions, prompt, input gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "messages":
			messages = v
		case "system":
			system = v
		case "instructions":
			instructions = v
		case "prompt":
			prompt = v
		case "input":
			input = v
		case "tools", "functions":
			if v.IsArray() && v.Get("0").Exists() {
				req.HasTools = true
				w.extra += len(v.Raw)
			}
		case "response_format", "output_format": // chat completions; anthropic
			req.JSONMode = req.JSONMode || oldJSONFormat(v.Get("type").Str)
		case "text", "output_config": // responses; anthropic
			req.JSONMode = req.JSONMode || oldJSONFormat(v.Get("format.type").Str)
		}
		return true
	})

	if system.Exists() {
		w.content(system, "system")
		w.endMessage()
	}
	if instructions.Type == gjson.String {
		w.add(instructions, "system")
		w.endMessage()
	}
	if messages.IsArray() {
		messages.ForEach(w.item)
	}
	if prompt.Exists() {
		w.prompt(prompt)
	}
	if input.IsArray() && input.Get("0").IsObject() {
		input.ForEach(w.item) // responses: input items
	} else if input.Exists() {
		w.prompt(input) // embeddings, or a responses input string
	}

	conv := w.conv.String()
	req.Conversation = conv
	req.System = oldJoin(conv, w.system)
	req.LastUser = oldJoin(conv, w.lastUser)
	req.HasImages = w.images
	req.TextTokens = tokens.Estimate(conv)
	req.PromptTokens = req.TextTokens + MessageTokenOverhead*w.messages + w.extra/4 + w.ids
}

// oldSpan is where a piece of text lies in the conversation.
type oldSpan struct{ start, end int }

// oldWalk gathers the text of a request's messages. Its methods take
// the role of the text by its API name; roles other than "system" and
// "user" count only for the conversation.
type oldWalk struct {
	conv     strings.Builder
	system   []oldSpan // the system prompt's text
	turn     []oldSpan // the user text of the current message
	lastUser []oldSpan // the text of the last user turn
	userTurn bool      // the current message is a user turn
	messages int       // messages that get MessageTokenOverhead
	extra    int       // bytes of tool definitions, calls and inputs
	ids      int       // prompt tokens given as token ids
	images   bool
}

// add appends the string v, if it is one, to the current message.
func (w *oldWalk) add(v gjson.Result, role string) {
	if role == "user" {
		w.userTurn = true
	}
	s := oldString(v)
	if s == "" {
		return
	}
	if w.conv.Len() > 0 {
		w.conv.WriteByte('\n')
	}
	sp := oldSpan{start: w.conv.Len(), end: w.conv.Len() + len(s)}
	w.conv.WriteString(s)
	switch role {
	case "system":
		w.system = append(w.system, sp)
	case "user":
		w.turn = append(w.turn, sp)
	}
}

// endTurn closes the current message or prompt.
func (w *oldWalk) endTurn() {
	if w.userTurn {
		w.lastUser, w.turn = w.turn, w.lastUser
	}
	w.turn = w.turn[:0]
	w.userTurn = false
}

// endMessage closes the current message.
func (w *oldWalk) endMessage() {
	w.endTurn()
	w.messages++
}

// item reads one element of messages or of Responses input items: a
// chat or Anthropic message, or a Responses input item. Its signature
// suits gjson's ForEach.
func (w *oldWalk) item(_, m gjson.Result) bool {
	if m.Type == gjson.String { // tolerate bare strings as user turns
		w.add(m, "user")
		w.endMessage()
		return true
	}
	if !m.IsObject() {
		return true
	}
	var typ, role string
	var content, output gjson.Result
	m.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			typ = v.Str
		case "role":
			role = v.Str
		case "content":
			content = v
		case "output": // responses function_call_output
			output = v
		case "tool_calls", "function_call", "arguments", "input":
			// chat tool calls; responses function_call arguments and
			// custom_tool_call input
			w.extra += len(v.Raw)
		}
		return true
	})
	switch typ {
	case "", "message":
		if role == "developer" {
			role = "system"
		}
		w.content(content, role)
	case "function_call_output", "custom_tool_call_output":
		w.content(output, "tool")
	case "function_call", "custom_tool_call":
	default: // reasoning items, references, built-in tool calls
		return true
	}
	w.endMessage()
	return true
}

// content reads a message's content: a string or a list of parts.
func (w *oldWalk) content(v gjson.Result, role string) {
	if v.Type == gjson.String {
		w.add(v, role)
		return
	}
	if !v.IsArray() {
		return
	}
	v.ForEach(func(_, p gjson.Result) bool {
		if p.Type == gjson.String {
			w.add(p, role)
		} else if p.IsObject() {
			w.part(p, role)
		}
		return true
	})
}

// part reads one content part or block.
func (w *oldWalk) part(p gjson.Result, role string) {
	var typ string
	var text, sub gjson.Result
	p.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			typ = v.Str
		case "text", "thinking", "refusal":
			if v.Type == gjson.String {
				text = v
			}
		case "content": // anthropic tool_result
			sub = v
		case "input": // anthropic tool_use
			w.extra += len(v.Raw)
		}
		return true
	})
	switch typ {
	case "text", "input_text", "output_text":
		w.add(text, role)
	case "image_url", "image", "input_image":
		w.images = true
	case "tool_result":
		w.content(sub, "tool")
		return // tool results alone do not make a user turn
	case "thinking", "refusal":
		w.add(text, "assistant")
	}
	if role == "user" {
		// an image- or audio-only user message is a user turn too
		w.userTurn = true
	}
}

// prompt reads a /completions prompt or an /embeddings input: a string,
// a list of strings, or token ids, all one user turn.
func (w *oldWalk) prompt(v gjson.Result) {
	switch {
	case v.Type == gjson.String:
		w.add(v, "user")
	case v.IsArray():
		v.ForEach(func(_, e gjson.Result) bool {
			switch {
			case e.Type == gjson.String:
				w.add(e, "user")
			case e.Type == gjson.Number:
				w.ids++
			case e.IsArray():
				w.ids += int(e.Get("#").Int())
			}
			return true
		})
	default:
		return
	}
	w.endTurn()
}

// oldString returns the string v, or "" when v is no string. gjson
// decodes a surrogate escape and the escape after it as a pair even when
// they make none; encoding/json turns each lone surrogate into U+FFFD,
// so strings with a surrogate escape are left to it.
func oldString(v gjson.Result) string {
	if v.Type != gjson.String {
		return ""
	}
	if strings.Contains(v.Raw, `\ud`) || strings.Contains(v.Raw, `\uD`) {
		var s string
		if json.Unmarshal([]byte(v.Raw), &s) == nil {
			return s
		}
	}
	return v.Str
}

// oldJoin returns the text at spans of conv, one span per line.
func oldJoin(conv string, spans []oldSpan) string {
	if len(spans) == 1 {
		return conv[spans[0].start:spans[0].end]
	}
	var b strings.Builder
	for i, sp := range spans {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(conv[sp.start:sp.end])
	}
	return b.String()
}

// oldJSONFormat reports whether an output format type asks for JSON.
func oldJSONFormat(typ string) bool {
	return typ == "json_object" || typ == "json_schema"
}

// readPromptSeeds are bodies of every API shape ReadPrompt reads, and of
// the corners of JSON it must read as the oracle does.
var readPromptSeeds = []string{
	// chat completions
	`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}]}`,
	`{"messages":[{"role":"system","content":"sys"},{"role":"user","content":"a"},{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},{"role":"tool","tool_call_id":"1","content":"c"},{"role":"assistant","content":"b"},{"role":"user","content":"d"}]}`,
	`{"messages":[{"role":"developer","content":[{"type":"text","text":"dev"}]},{"role":"user","content":[{"type":"text","text":"describe"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},{"type":"text","text":"this"}]}]}`,
	`{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"ok"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`,
	`{"messages":[{"role":"system","content":"s1"},{"role":"user","content":"u"},{"role":"system","content":"s2"}]}`,
	`{"messages":[{"role":"user","content":"line1\nline2 \"q\" \u4f60\u597d 世界 \ud83d\ude00 \ud800\u0041 \udc00"}]}`,
	`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"response_format":{"type":"json_object"}}`,
	`{"messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{}}}}`,
	`{"messages":[{"role":"user","content":"x"}],"tools":[],"functions":[null],"response_format":{"type":"text"}}`,
	`{"messages":[{"role":"assistant","content":[{"type":"refusal","refusal":"no"}]},{"role":"user","content":["bare","parts"]}]}`,
	`{"messages":["bare string",1,null,[],{},{"role":5,"content":"r"},{"role":"user","content":{"text":"obj"}}]}`,
	// completions and embeddings
	`{"model":"m","prompt":"Once upon a time"}`, `{"model":"m","prompt":["one","two"]}`, `{"prompt":[1,2,3,4,5,6,7,8,9,10]}`,
	`{"prompt":["a",[1,2],3,-4,true,null,{"x":1}]}`, `{"model":"e","input":"embed me"}`, `{"model":"e","input":["a","b"]}`,
	`{"input":[[1,2,3],[4,5],[]]}`, `{"prompt":null}`, `{"prompt":{"a":"b"}}`, `{"input":5}`, `{"input":[]}`,
	// responses
	`{"model":"m","instructions":"Talk like a pirate.","input":"Are semicolons optional?"}`,
	`{"model":"m","input":[{"role":"developer","content":"dev"},{"role":"user","content":[{"type":"input_text","text":"what is"},{"type":"input_image","image_url":"https://x/y.png"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"a cat"}]},{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"result"},{"type":"custom_tool_call","input":"abc"},{"type":"custom_tool_call_output","output":[{"type":"input_text","text":"out"}]},{"type":"reasoning","summary":[]},{"role":"user","content":"and this?"}],"tools":[{"type":"web_search"}],"text":{"format":{"type":"json_schema","name":"x","schema":{}}}}`,
	`{"input":"x","text":{"format":{"type":"text"}},"instructions":5}`, `{"input":["a",{"role":"user","content":"b"}]}`,
	// anthropic messages
	`{"model":"claude","max_tokens":10,"system":"You are terse.","messages":[{"role":"user","content":"Hi"}]}`,
	`{"system":[{"type":"text","text":"s1"},{"type":"text","text":"s2","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"text","text":"what is this"}]},{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"let me look"},{"type":"tool_use","id":"t1","name":"look","input":{"q":"cat"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"a cat"}]}]}],"tools":[{"name":"look","input_schema":{"type":"object"}}]}`,
	`{"messages":[{"role":"user","content":"q"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"out"},{"type":"text","text":"now answer"}]}]}`,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"tool_result","content":"r"},{"type":"text","text":"b"}]}]}`,
	`{"messages":[{"role":"user","content":"x"}],"output_format":{"type":"json_schema","schema":{}}}`,
	`{"messages":[{"role":"user","content":"x"}],"output_config":{"format":{"type":"json_schema","schema":{}}}}`,
	`{"system":null,"messages":[]}`, `{"system":{"text":"s"}}`,
	// corners: order, duplicates, escapes, white space, no object
	`{"messages":[{"role":"user","content":"u"}],"system":"late system","instructions":"late"}`,
	`{"messages":[{"role":"user","content":"first"}],"messages":[{"role":"user","content":"second"}],"tools":[1],"tools":[2]}`,
	`{"messages":[{"role":"user","role":"assistant","content":"c","content":"d","type":"message","type":5}]}`,
	`{"messages":[{"content":[{"type":"text","text":"t","text":5,"thinking":"k","type":"thinking"}]}]}`,
	`{"m\u0065ssages":[{"r\u006fle":"\u0075ser","c\u006fntent":"esc\"aped\\"}],"response_format":{"typ\u0065":"js\u006fn_object"}}`,
	`{"text":{"format":{"type":"text"},"format":{"type":"json_object"}},"response_format":{"type":"json_object","type":"text"}}`,
	" \t\n{ \"messages\" : [ { \"role\" : \"user\" , \"content\" : [ { \"type\" : \"text\" , \"text\" : \"spaced\" } ] } ] } \n",
	`{"model":"m"}`, `{}`, `[1,2]`, `"string"`, `12`, `null`, `{"messages":"x"}`, `{"messages":{"role":"user"}}`,
	`{"messages":[{"role":"user","content":""},{"role":"user","content":[{"type":"text","text":""}]}]}`,
	"{\"messages\":[{\"role\":\"user\",\"content\":\"raw \xff invalid \xfe utf-8\"}]}",
}

// FuzzReadPrompt holds ReadPrompt to the gjson reader it replaced, on
// valid JSON, and to reading anything else without panicking.
func FuzzReadPrompt(f *testing.F) {
	for _, s := range readPromptSeeds {
		if !json.Valid([]byte(s)) {
			f.Fatalf("seed is not valid JSON: %s", s)
		}
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got := Request{Endpoint: "/chat/completions", Body: []byte(body)}
		got.ReadPrompt()
		if !json.Valid([]byte(body)) {
			return
		}
		// The oracle replaced the invalid UTF-8 of a string that holds
		// a surrogate escape by U+FFFD (it left those to encoding/json);
		// ReadPrompt keeps invalid UTF-8 as it is in every string.
		if !utf8.ValidString(body) && (strings.Contains(body, `\ud`) || strings.Contains(body, `\uD`)) {
			return
		}
		want := Request{Endpoint: "/chat/completions", Body: []byte(body)}
		gjsonReadPrompt(&want)
		if got.System != want.System || got.LastUser != want.LastUser || got.Conversation != want.Conversation ||
			got.HasTools != want.HasTools || got.HasImages != want.HasImages || got.JSONMode != want.JSONMode ||
			got.PromptTokens != want.PromptTokens || got.TextTokens != want.TextTokens {
			t.Fatalf("%s\n got System %q LastUser %q Conversation %q tools %v images %v json %v tokens %d/%d\n"+
				"want System %q LastUser %q Conversation %q tools %v images %v json %v tokens %d/%d", body,
				got.System, got.LastUser, got.Conversation, got.HasTools, got.HasImages, got.JSONMode, got.PromptTokens, got.TextTokens,
				want.System, want.LastUser, want.Conversation, want.HasTools, want.HasImages, want.JSONMode, want.PromptTokens, want.TextTokens)
		}
	})
}
