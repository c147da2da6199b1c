package translate

import (
	"cmp"
	"strings"

	"github.com/tidwall/gjson"
)

// messagesToChatReq serves Anthropic Messages clients from OpenAI Chat
// Completions providers.
type messagesToChatReq struct{}

func init() { Register(Anthropic, OpenAI, messagesToChatReq{}) }

// Request translates a Messages request to a Chat Completions request.
// Parameters with no Chat Completions counterpart that only tune
// sampling or bookkeeping (top_k, thinking, service_tier, cache_control)
// are dropped.
func (messagesToChatReq) Request(body []byte, opt Options) ([]byte, Exchange, error) {
	req := topLevel(body)
	for _, k := range []string{"mcp_servers", "container"} {
		if present(req.Get(k)) {
			return nil, nil, unsupported("%s cannot be served by an OpenAI-compatible provider", k)
		}
	}
	// The answer names the model that served it; one that does not
	// is named by the model it was asked of.
	x := &chatToMessagesResp{model: strRaw(req.Get("model"))}

	w := jsonw{b: make([]byte, 0, len(body)+len(body)/4+128)}
	w.open('{')
	w.kraw("model", strRaw(req.Get("model")))
	w.key("messages")
	w.open('[')
	if err := systemMessage(&w, req.Get("system")); err != nil {
		return nil, nil, err
	}
	var err error
	req.Get("messages").ForEach(func(_, m gjson.Result) bool {
		switch m.Get("role").Str {
		case "user":
			err = userMessages(&w, m.Get("content"))
		case "assistant":
			err = assistantMessage(&w, m.Get("content"))
		case "":
			err = unsupported("a message without a role cannot be translated")
		default:
			err = unsupported("messages with role %q are not part of the Messages API", m.Get("role").Str)
		}
		return err == nil
	})
	if err != nil {
		return nil, nil, err
	}
	w.close(']')

	if mt := req.Get("max_tokens"); present(mt) {
		w.kraw(cmp.Or(opt.MaxTokensField, "max_tokens"), mt.Raw)
	}
	if tools := req.Get("tools"); tools.Get("0").Exists() {
		if err := messagesTools(&w, tools); err != nil {
			return nil, nil, err
		}
		if err := messagesToolChoice(&w, req.Get("tool_choice")); err != nil {
			return nil, nil, err
		}
	}
	// Structured output: output_config.format, or the beta's
	// output_format.
	format := req.Get("output_config.format")
	if !present(format) {
		format = req.Get("output_format")
	}
	if present(format) {
		if typ := format.Get("type").Str; typ != "json_schema" {
			return nil, nil, unsupported("output format %q is not part of the Messages API", typ)
		}
		w.key("response_format")
		w.open('{')
		w.kstr("type", "json_schema")
		w.key("json_schema")
		w.open('{')
		w.kstr("name", "response")
		w.kraw("schema", rawOr(format.Get("schema"), `{"type":"object"}`))
		w.kraw("strict", "true")
		w.close('}')
		w.close('}')
	}
	if stop := req.Get("stop_sequences"); stop.IsArray() && stop.Get("0").Exists() {
		w.kraw("stop", stop.Raw)
	}
	for _, k := range []string{"temperature", "top_p"} {
		if v := req.Get(k); present(v) {
			w.kraw(k, v.Raw)
		}
	}
	if u := req.Get("metadata.user_id"); u.Type == gjson.String {
		w.kraw("user", u.Raw)
	}
	if req.Get("stream").Bool() {
		w.kraw("stream", "true")
		if !opt.NoStreamUsage {
			w.kraw("stream_options", `{"include_usage":true}`)
		}
	}
	w.close('}')
	return w.b, x, nil
}

// systemMessage writes the system prompt (a string or text blocks) as
// the first chat message.
func systemMessage(w *jsonw, system gjson.Result) error {
	var text string
	switch {
	case system.Type == gjson.String:
		if system.Str == "" {
			return nil
		}
		text = system.Raw
	case system.IsArray():
		t, err := joinText(system, "system prompt")
		if err != nil || t == "" {
			return err
		}
		text = string(appendString(nil, t))
	default:
		return nil
	}
	w.open('{')
	w.kstr("role", "system")
	w.kraw("content", text)
	w.close('}')
	return nil
}

// joinText concatenates the text blocks of content, refusing any other
// kind of block.
func joinText(content gjson.Result, where string) (string, error) {
	var sb strings.Builder
	var err error
	content.ForEach(func(_, b gjson.Result) bool {
		if typ := b.Get("type").Str; typ != "text" {
			err = unsupported("%s blocks in a %s cannot be served by an OpenAI-compatible provider", typ, where)
			return false
		}
		if sb.Len() > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(b.Get("text").Str)
		return true
	})
	return sb.String(), err
}

// userMessages writes a user turn: its tool results first, each as a
// tool message, then the rest of its content as a user message. Tool
// messages take text only: the images of a tool result (a screenshot, an
// image file read) go in the user message, where they came in the turn.
func userMessages(w *jsonw, content gjson.Result) error {
	if content.Type == gjson.String {
		w.open('{')
		w.kstr("role", "user")
		w.kraw("content", content.Raw)
		w.close('}')
		return nil
	}
	if !content.IsArray() {
		return unsupported("message content must be a string or an array of blocks")
	}
	var parts jsonw
	var only string // raw text of a lone text block
	n := 0
	var err error
	content.ForEach(func(_, b gjson.Result) bool {
		switch typ := b.Get("type").Str; typ {
		case "tool_result":
			var images int
			if images, err = toolMessage(w, b, &parts); images > 0 {
				n += images
				only = ""
			}
		case "text":
			n++
			only = strRaw(b.Get("text"))
			parts.open('{')
			parts.kstr("type", "text")
			parts.kraw("text", only)
			parts.close('}')
		case "image":
			n++
			only = ""
			err = imagePart(&parts, b.Get("source"))
		case "":
			err = unsupported("a content block without a type cannot be translated")
		default:
			err = unsupported("%s blocks cannot be served by an OpenAI-compatible provider", typ)
		}
		return err == nil
	})
	if err != nil || n == 0 {
		return err
	}
	w.open('{')
	w.kstr("role", "user")
	w.key("content")
	if n == 1 && only != "" {
		w.raw(only)
	} else {
		w.open('[')
		w.raw(string(parts.b))
		w.close(']')
	}
	w.close('}')
	return nil
}

// toolMessage writes a tool_result block as a tool message, and the
// images of its content as image parts to images, returning how many.
func toolMessage(w *jsonw, b gjson.Result, images *jsonw) (int, error) {
	content := b.Get("content")
	text := content.Raw
	n := 0
	if content.IsArray() {
		var sb strings.Builder
		var err error
		content.ForEach(func(_, c gjson.Result) bool {
			switch typ := c.Get("type").Str; typ {
			case "text":
				if sb.Len() > 0 {
					sb.WriteByte('\n')
				}
				sb.WriteString(c.Get("text").Str)
			case "image":
				n++
				err = imagePart(images, c.Get("source"))
			default:
				err = unsupported("%s blocks in a tool result cannot be served by an OpenAI-compatible provider", typ)
			}
			return err == nil
		})
		if err != nil {
			return n, err
		}
		text = string(appendString(nil, sb.String()))
	} else if content.Type != gjson.String {
		text = `""`
	}
	if b.Get("is_error").Bool() {
		// The chat API has no error flag; say it in the content.
		t := gjson.Parse(text).Str
		text = string(appendString(nil, "Error: "+t))
	}
	w.open('{')
	w.kstr("role", "tool")
	w.kraw("tool_call_id", strRaw(b.Get("tool_use_id")))
	w.kraw("content", text)
	w.close('}')
	return n, nil
}

// imagePart writes an image block's source as an image_url part.
func imagePart(w *jsonw, src gjson.Result) error {
	var url string
	switch src.Get("type").Str {
	case "base64":
		url = "data:" + src.Get("media_type").Str + ";base64," + src.Get("data").Str
	case "url":
		url = src.Get("url").Str
	default:
		return unsupported("image sources of type %q cannot be served by an OpenAI-compatible provider", src.Get("type").Str)
	}
	w.open('{')
	w.kstr("type", "image_url")
	w.key("image_url")
	w.open('{')
	w.kstr("url", url)
	w.close('}')
	w.close('}')
	return nil
}

// assistantMessage writes an assistant turn: its text as content, its
// tool_use blocks as tool calls. Thinking blocks are dropped: the chat
// API has no way to send them back.
func assistantMessage(w *jsonw, content gjson.Result) error {
	w.open('{')
	w.kstr("role", "assistant")
	if content.Type == gjson.String {
		w.kraw("content", content.Raw)
		w.close('}')
		return nil
	}
	var text strings.Builder
	var calls jsonw
	var err error
	content.ForEach(func(_, b gjson.Result) bool {
		switch typ := b.Get("type").Str; typ {
		case "text":
			text.WriteString(b.Get("text").Str)
		case "tool_use":
			calls.open('{')
			calls.kraw("id", strRaw(b.Get("id")))
			calls.kstr("type", "function")
			calls.key("function")
			calls.open('{')
			calls.kraw("name", strRaw(b.Get("name")))
			calls.kstr("arguments", rawOr(b.Get("input"), "{}"))
			calls.close('}')
			calls.close('}')
		case "thinking", "redacted_thinking":
		default:
			err = unsupported("%s blocks in assistant messages cannot be served by an OpenAI-compatible provider", typ)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	w.key("content")
	if text.Len() > 0 || len(calls.b) == 0 {
		w.str(text.String())
	} else {
		w.raw("null")
	}
	if len(calls.b) > 0 {
		w.key("tool_calls")
		w.open('[')
		w.raw(string(calls.b))
		w.close(']')
	}
	w.close('}')
	return nil
}

// messagesTools writes client tools as function tools. Anthropic's
// server tools (web search, code execution, …) run at Anthropic and
// cannot be served elsewhere.
func messagesTools(w *jsonw, tools gjson.Result) error {
	w.key("tools")
	w.open('[')
	var err error
	tools.ForEach(func(_, t gjson.Result) bool {
		if typ := t.Get("type").Str; typ != "" && typ != "custom" {
			err = unsupported("the server tool %q cannot be served by an OpenAI-compatible provider", typ)
			return false
		}
		w.open('{')
		w.kstr("type", "function")
		w.key("function")
		w.open('{')
		w.kraw("name", strRaw(t.Get("name")))
		if d := t.Get("description"); d.Type == gjson.String {
			w.kraw("description", d.Raw)
		}
		w.kraw("parameters", rawOr(t.Get("input_schema"), `{"type":"object","properties":{}}`))
		w.close('}')
		w.close('}')
		return true
	})
	w.close(']')
	return err
}

// messagesToolChoice writes tool_choice and parallel_tool_calls.
func messagesToolChoice(w *jsonw, choice gjson.Result) error {
	if !choice.IsObject() {
		return nil
	}
	switch typ := choice.Get("type").Str; typ {
	case "auto":
		w.kstr("tool_choice", "auto")
	case "any":
		w.kstr("tool_choice", "required")
	case "none":
		w.kstr("tool_choice", "none")
	case "tool":
		w.key("tool_choice")
		w.open('{')
		w.kstr("type", "function")
		w.key("function")
		w.open('{')
		w.kraw("name", strRaw(choice.Get("name")))
		w.close('}')
		w.close('}')
	default:
		return unsupported("tool_choice of type %q is not part of the Messages API", typ)
	}
	if choice.Get("disable_parallel_tool_use").Bool() {
		w.kraw("parallel_tool_calls", "false")
	}
	return nil
}

// chatToMessagesResp translates Chat Completions answers for a Messages
// client.
type chatToMessagesResp struct {
	// stream state
	started bool
	id      string // raw JSON
	model   string // raw JSON
	open    blockKind
	index   int    // index of the open content block
	next    int    // index of the next content block
	tool    int64  // chat index of the open tool call
	toolID  string // its id
	tools   bool   // the answer has tool calls
	refused bool   // the answer has a refusal
	stop    string
	usage   Usage
}

// stopReason maps a chat finish_reason to a Messages stop_reason.
func stopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

// Response translates a chat completion to a Messages answer.
func (x *chatToMessagesResp) Response(body []byte) ([]byte, error) {
	if !gjson.ValidBytes(body) {
		return nil, malformed("the body is not JSON")
	}
	resp := gjson.ParseBytes(body)
	choice := resp.Get("choices.0")
	if !choice.IsObject() {
		return nil, malformed("the completion has no choices")
	}
	msg := choice.Get("message")
	w := jsonw{b: make([]byte, 0, len(body)+128)}
	w.open('{')
	w.kraw("id", strRaw(resp.Get("id")))
	w.kstr("type", "message")
	w.kstr("role", "assistant")
	w.kraw("model", x.modelOf(resp.Get("model")))
	w.key("content")
	w.open('[')
	for _, k := range []string{"content", "refusal"} {
		if t := msg.Get(k); t.Type == gjson.String && t.Str != "" {
			w.open('{')
			w.kstr("type", "text")
			w.kraw("text", t.Raw)
			w.close('}')
		}
	}
	var err error
	finish := choice.Get("finish_reason").Str
	calls := msg.Get("tool_calls")
	calls.ForEach(func(_, c gjson.Result) bool {
		var input string
		if input, err = toolInput(c.Get("function.arguments")); err != nil {
			if finish == "length" {
				// The output limit cut the call short: the answer is
				// still the client's (stop_reason max_tokens says it was
				// cut), less the call no one could run.
				err = nil
				return true
			}
			return false
		}
		w.open('{')
		w.kstr("type", "tool_use")
		w.kraw("id", strRaw(c.Get("id")))
		w.kraw("name", strRaw(c.Get("function.name")))
		w.kraw("input", input)
		w.close('}')
		return true
	})
	if err != nil {
		return nil, err
	}
	w.close(']')
	stop := stopReason(finish)
	if calls.Get("0").Exists() && stop == "end_turn" {
		stop = "tool_use" // a forced tool call ends with "stop" at OpenAI
	}
	if r := msg.Get("refusal"); r.Type == gjson.String && r.Str != "" && stop == "end_turn" {
		stop = "refusal" // the model declined: OpenAI says so in refusal, with finish_reason stop
	}
	w.kstr("stop_reason", stop)
	w.kraw("stop_sequence", "null")
	var u Usage
	u.ReadOpenAI(resp.Get("usage"))
	w.key("usage")
	u.writeAnthropic(&w)
	w.close('}')
	return w.b, nil
}

// toolInput turns a tool call's arguments string into a JSON object.
func toolInput(args gjson.Result) (string, error) {
	if args.Str == "" {
		return "{}", nil
	}
	if !gjson.Valid(args.Str) || !gjson.Parse(args.Str).IsObject() {
		return "", malformed("tool call arguments are not a JSON object")
	}
	return args.Str, nil
}

// Error translates an OpenAI error body to Anthropic's error shape.
func (x *chatToMessagesResp) Error(status int, body []byte) []byte {
	if !gjson.ValidBytes(body) {
		return body
	}
	e := gjson.GetBytes(body, "error")
	if !e.IsObject() && e.Type != gjson.String {
		if gjson.GetBytes(body, "object").Str != "error" {
			return body
		}
		e = gjson.ParseBytes(body) // vLLM: {"object":"error","message":…}
	}
	var w jsonw
	w.open('{')
	w.kstr("type", "error")
	w.key("error")
	writeAnthropicErrorDetail(&w, status, e)
	w.close('}')
	return w.b
}

func writeAnthropicErrorDetail(w *jsonw, status int, e gjson.Result) {
	msg := e.Get("message")
	if e.Type == gjson.String {
		msg = e // {"error":"..."}, as Ollama and others send
	}
	w.open('{')
	w.kstr("type", ErrorType(status))
	if status == 400 && contextLengthOpenAI(e, msg.Str) && !strings.HasPrefix(msg.Str, "prompt is too long") {
		// Anthropic's wording of a prompt longer than the context
		// window, which Messages clients test for (to compact the
		// conversation, say)
		w.kstr("message", "prompt is too long: "+msg.Str)
	} else {
		w.kraw("message", strRaw(msg))
	}
	w.close('}')
}

// contextLengthOpenAI reports whether an OpenAI-format error says the
// prompt is longer than the model's context window: OpenAI's code
// context_length_exceeded, or the message that OpenAI, vLLM and others
// give ("This model's maximum context length is 8192 tokens. …").
func contextLengthOpenAI(e gjson.Result, msg string) bool {
	return e.Get("code").Str == "context_length_exceeded" ||
		strings.Contains(strings.ToLower(msg), "maximum context length")
}

// Event translates one chat completion chunk to Messages events.
func (x *chatToMessagesResp) Event(dst, data []byte) ([]byte, error) {
	w := jsonw{b: dst}
	if string(data) == "[DONE]" {
		x.start(&w)
		x.closeBlock(&w)
		x.event(&w, "message_delta", func(w *jsonw) {
			w.key("delta")
			w.open('{')
			w.kstr("stop_reason", cmp.Or(x.stop, "end_turn"))
			w.kraw("stop_sequence", "null")
			w.close('}')
			w.key("usage")
			x.usage.writeAnthropic(w)
		})
		x.event(&w, "message_stop", func(*jsonw) {})
		return w.b, nil
	}
	if !gjson.ValidBytes(data) {
		return dst, malformed("a stream chunk is not JSON")
	}
	// One pass over the chunk's members; usage comes last.
	var c struct{ id, model, choices, usage, err gjson.Result }
	gjson.ParseBytes(data).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "id":
			c.id = v
		case "model":
			c.model = v
		case "choices":
			c.choices = v
		case "usage":
			c.usage = v
		case "error":
			c.err = v
		}
		return true
	})
	if present(c.err) {
		x.event(&w, "error", func(w *jsonw) {
			w.key("error")
			writeAnthropicErrorDetail(w, cmp.Or(ErrorStatus(c.err), 500), c.err)
		})
		return w.b, nil
	}
	x.usage.ReadOpenAI(c.usage)
	choice := c.choices.Get("0")
	if !choice.Exists() {
		// The usage chunk, or Azure's prompt filter results (with an
		// empty id) before the answer starts.
		return w.b, nil
	}
	if !x.started {
		if c.id.Str != "" {
			x.id = strRaw(c.id)
		}
		if c.model.Str != "" {
			x.model = x.modelOf(c.model)
		}
		x.start(&w)
	}
	d := choice.Get("delta")
	for _, k := range []string{"content", "refusal"} {
		t := d.Get(k)
		if t.Type != gjson.String || t.Str == "" {
			continue
		}
		x.refused = x.refused || k == "refusal"
		if x.open != blockText {
			x.closeBlock(&w)
			x.openBlock(&w, blockText, func(w *jsonw) {
				w.kstr("type", "text")
				w.kstr("text", "")
			})
		}
		x.delta(&w, func(w *jsonw) {
			w.kstr("type", "text_delta")
			w.kraw("text", t.Raw)
		})
	}
	var err error
	d.Get("tool_calls").ForEach(func(_, c gjson.Result) bool {
		idx := c.Get("index").Int()
		// A new call has an id. Some servers repeat it in every delta
		// of the same call, some change it in the deltas after the
		// first (which name no function); others leave the index out,
		// so that every call has index 0: another id with a function's
		// name is another call.
		id := c.Get("id")
		another := id.Str != x.toolID && c.Get("function.name").Str != ""
		if id.Str != "" && (x.open != blockTool || idx != x.tool || another) {
			x.closeBlock(&w)
			x.tool, x.toolID = idx, id.Str
			x.tools = true
			x.openBlock(&w, blockTool, func(w *jsonw) {
				w.kstr("type", "tool_use")
				w.kraw("id", id.Raw)
				w.kraw("name", strRaw(c.Get("function.name")))
				w.kraw("input", "{}")
			})
		} else if x.open != blockTool || idx != x.tool {
			err = malformed("arguments for tool call %d, which is not the open one", idx)
			return false
		}
		if a := c.Get("function.arguments"); a.Str != "" {
			x.delta(&w, func(w *jsonw) {
				w.kstr("type", "input_json_delta")
				w.kraw("partial_json", a.Raw)
			})
		}
		return true
	})
	if err != nil {
		return w.b, err
	}
	if f := choice.Get("finish_reason"); f.Str != "" {
		x.closeBlock(&w)
		x.stop = stopReason(f.Str)
		if x.tools && x.stop == "end_turn" {
			// A forced tool call ends with "stop" at OpenAI.
			x.stop = "tool_use"
		}
		if x.refused && x.stop == "end_turn" {
			x.stop = "refusal"
		}
	}
	return w.b, nil
}

// modelOf returns the model an answer names (raw JSON), or the one the
// request named when the answer names none.
func (x *chatToMessagesResp) modelOf(v gjson.Result) string {
	if v.Type == gjson.String && v.Str != "" {
		return v.Raw
	}
	return cmp.Or(x.model, `""`)
}

// start writes message_start once.
func (x *chatToMessagesResp) start(w *jsonw) {
	if x.started {
		return
	}
	x.started = true
	x.event(w, "message_start", func(w *jsonw) {
		w.key("message")
		w.open('{')
		w.kraw("id", cmp.Or(x.id, `""`))
		w.kstr("type", "message")
		w.kstr("role", "assistant")
		w.kraw("model", cmp.Or(x.model, `""`))
		w.kraw("content", "[]")
		w.kraw("stop_reason", "null")
		w.kraw("stop_sequence", "null")
		// The chat API reports usage at the end only; the final
		// message_delta carries it all.
		w.key("usage")
		Usage{}.writeAnthropic(w)
		w.close('}')
	})
}

func (x *chatToMessagesResp) openBlock(w *jsonw, kind blockKind, block func(w *jsonw)) {
	x.open, x.index = kind, x.next
	x.next++
	x.event(w, "content_block_start", func(w *jsonw) {
		w.kint("index", int64(x.index))
		w.key("content_block")
		w.open('{')
		block(w)
		w.close('}')
	})
}

func (x *chatToMessagesResp) closeBlock(w *jsonw) {
	if x.open == blockIgnored {
		return
	}
	x.open = blockIgnored
	x.event(w, "content_block_stop", func(w *jsonw) { w.kint("index", int64(x.index)) })
}

func (x *chatToMessagesResp) delta(w *jsonw, delta func(w *jsonw)) {
	x.event(w, "content_block_delta", func(w *jsonw) {
		w.kint("index", int64(x.index))
		w.key("delta")
		w.open('{')
		delta(w)
		w.close('}')
	})
}

// event writes one named Messages event whose data object has a type
// field and the fields written by fields.
func (x *chatToMessagesResp) event(w *jsonw, name string, fields func(w *jsonw)) {
	w.b = append(w.b, "event: "...)
	w.b = append(w.b, name...)
	w.b = append(w.b, "\ndata: "...)
	w.comma = false
	w.open('{')
	w.kstr("type", name)
	fields(w)
	w.close('}')
	w.b = append(w.b, "\n\n"...)
}
