package translate

import (
	"cmp"
	"strconv"
	"strings"
	"unicode"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// chatToMessages serves OpenAI Chat Completions clients from Anthropic
// Messages providers.
type chatToMessages struct{}

func init() { Register(OpenAI, Anthropic, chatToMessages{}) }

// jsonToolName names the tool that carries a response_format answer:
// Anthropic has no JSON mode, so the schema becomes a forced tool whose
// input is handed back to the client as the message content.
const jsonToolName = "json_response"

// Request translates a Chat Completions request to a Messages request.
func (chatToMessages) Request(body []byte, opt Options) ([]byte, Exchange, error) {
	req := topLevel(body)
	if err := refuseChat(req); err != nil {
		return nil, nil, err
	}
	x := &messagesToChat{
		model:        strRaw(req.Get("model")), // until the answer names the model that served it
		includeUsage: req.Get("stream_options.include_usage").Bool(),
		created:      now().Unix(),
	}

	w := jsonw{b: make([]byte, 0, len(body)+len(body)/4+128)}
	w.open('{')
	w.kraw("model", strRaw(req.Get("model")))

	maxTokens := req.Get("max_completion_tokens")
	if !present(maxTokens) {
		maxTokens = req.Get("max_tokens")
	}
	w.key("max_tokens")
	switch {
	case present(maxTokens):
		w.raw(maxTokens.Raw)
	case opt.DefaultMaxTokens > 0:
		w.int(int64(opt.DefaultMaxTokens))
	default:
		w.int(DefaultMaxTokens)
	}

	if err := chatMessages(&w, req.Get("messages")); err != nil {
		return nil, nil, err
	}

	tools, format := req.Get("tools"), req.Get("response_format")
	jsonMode := format.Get("type").Str == "json_object" || format.Get("type").Str == "json_schema"
	switch {
	case jsonMode:
		if tools.Get("0").Exists() {
			return nil, nil, unsupported("response_format %s together with tools cannot be served by an Anthropic provider", format.Get("type").Str)
		}
		x.jsonTool = true
		schema := format.Get("json_schema.schema")
		w.key("tools")
		w.open('[')
		w.open('{')
		w.kstr("name", jsonToolName)
		w.kstr("description", "Answer with a JSON value matching this schema.")
		w.key("input_schema")
		if schema.IsObject() {
			w.raw(schema.Raw)
		} else {
			w.raw(`{"type":"object"}`)
		}
		w.close('}')
		w.close(']')
		w.kraw("tool_choice", `{"type":"tool","name":"`+jsonToolName+`"}`)
	case tools.Get("0").Exists():
		if err := chatTools(&w, tools); err != nil {
			return nil, nil, err
		}
		if err := chatToolChoice(&w, req.Get("tool_choice"), req.Get("parallel_tool_calls")); err != nil {
			return nil, nil, err
		}
	}

	if err := stopSequences(&w, req.Get("stop")); err != nil {
		return nil, nil, err
	}
	if t := req.Get("temperature"); present(t) {
		if t.Num > 1 {
			return nil, nil, unsupported("temperature %s is above the maximum of 1 for Anthropic providers", t.Raw)
		}
		w.kraw("temperature", t.Raw)
	}
	// Recent Claude models refuse temperature and top_p together; many
	// OpenAI clients send both, so top_p gives way.
	if v := req.Get("top_p"); present(v) && !present(req.Get("temperature")) {
		w.kraw("top_p", v.Raw)
	}
	if v := req.Get("top_k"); present(v) {
		w.kraw("top_k", v.Raw)
	}
	if u := req.Get("user"); u.Type == gjson.String {
		w.key("metadata")
		w.open('{')
		w.kraw("user_id", u.Raw)
		w.close('}')
	}
	if req.Get("stream").Bool() {
		w.kraw("stream", "true")
	}
	w.close('}')
	return w.b, x, nil
}

// stopSequences writes stop (a string or an array of them) as
// stop_sequences. The Messages API refuses empty stop sequences and those
// made only of whitespace: an empty one, which stops nothing, is left
// out; one of whitespace ("\n" for one line), which would change the
// answer if left out, cannot be served.
func stopSequences(w *jsonw, stop gjson.Result) error {
	var seqs []gjson.Result
	switch {
	case stop.Type == gjson.String:
		seqs = []gjson.Result{stop}
	case stop.IsArray():
		seqs = stop.Array()
	}
	var out jsonw
	for _, seq := range seqs {
		switch {
		case seq.Type != gjson.String || seq.Str == "":
			continue
		case strings.TrimSpace(seq.Str) == "":
			return unsupported("the stop sequence %s is only whitespace, which Anthropic providers refuse", seq.Raw)
		}
		out.raw(seq.Raw)
	}
	if len(out.b) > 0 {
		w.key("stop_sequences")
		w.open('[')
		w.raw(string(out.b))
		w.close(']')
	}
	return nil
}

// refuseChat rejects Chat Completions features the Messages API cannot
// honour. Parameters with no Messages counterpart that only tune
// sampling or bookkeeping (frequency and presence penalties, seed,
// logit_bias, store, metadata, service_tier, reasoning_effort,
// prediction) are dropped.
func refuseChat(req object) error {
	if n := req.Get("n"); present(n) && n.Int() != 1 {
		return unsupported("n other than 1 cannot be served by an Anthropic provider")
	}
	if req.Get("logprobs").Bool() || present(req.Get("top_logprobs")) {
		return unsupported("logprobs cannot be served by an Anthropic provider")
	}
	if present(req.Get("audio")) || strings.Contains(req.Get("modalities").Raw, `"audio"`) {
		return unsupported("audio output cannot be served by an Anthropic provider")
	}
	if present(req.Get("functions")) || present(req.Get("function_call")) {
		return unsupported("the legacy functions parameters cannot be served by an Anthropic provider; use tools")
	}
	if present(req.Get("web_search_options")) {
		return unsupported("web_search_options cannot be served by an Anthropic provider")
	}
	return nil
}

// present reports whether a field exists and is not null.
func present(v gjson.Result) bool { return v.Exists() && v.Type != gjson.Null }

// turn is one Messages API message under construction: consecutive chat
// messages of the same role (such as several tool results) merge into
// one, as the Messages API wants roles to alternate.
type turn struct {
	role   string
	blocks jsonw
}

// chatMessages writes the system and messages fields.
func chatMessages(w *jsonw, msgs gjson.Result) error {
	if !msgs.IsArray() {
		return unsupported("messages must be an array")
	}
	var system jsonw
	var turns []turn
	var err error
	add := func(role string) *jsonw {
		if len(turns) == 0 || turns[len(turns)-1].role != role {
			turns = append(turns, turn{role: role})
		}
		return &turns[len(turns)-1].blocks
	}
	// The final message, as the Messages API sees it: system messages
	// go to the system prompt.
	final := int64(-1)
	msgs.ForEach(func(i, m gjson.Result) bool {
		if r := m.Get("role").Str; r != "system" && r != "developer" {
			final = i.Int()
		}
		return true
	})
	msgs.ForEach(func(i, m gjson.Result) bool {
		switch role := m.Get("role").Str; role {
		case "system", "developer":
			err = textBlocks(&system, m.Get("content"), false)
		case "user":
			err = textBlocks(add("user"), m.Get("content"), true)
		case "assistant":
			b := add("assistant")
			content := m.Get("content")
			if i.Int() == final && !m.Get("tool_calls.0").Exists() {
				content = trimPrefill(content)
			}
			if err = textBlocks(b, content, false); err == nil {
				err = toolUses(b, m.Get("tool_calls"))
			}
		case "tool":
			b := add("user")
			b.open('{')
			b.kstr("type", "tool_result")
			b.kraw("tool_use_id", toolUseID(m.Get("tool_call_id")))
			// A tool with no output: Anthropic refuses empty content
			// but takes a tool_result without it.
			if c := m.Get("content"); c.Type == gjson.String && c.Str != "" {
				b.kraw("content", c.Raw)
			} else if c.IsArray() {
				var parts jsonw
				err = textBlocks(&parts, c, true) // (Anthropic takes images in tool results)
				if len(parts.b) > 0 {
					b.key("content")
					b.open('[')
					b.raw(string(parts.b))
					b.close(']')
				}
			}
			b.close('}')
		case "":
			err = unsupported("a message without a role cannot be translated")
		default:
			err = unsupported("messages with role %q cannot be served by an Anthropic provider", role)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if len(system.b) > 0 {
		w.key("system")
		w.open('[')
		w.raw(string(system.b))
		w.close(']')
	}
	w.key("messages")
	w.open('[')
	last := "" // the role of the open turn
	for _, t := range turns {
		switch {
		case len(t.blocks.b) == 0:
			// Empty content ("" or null without tool calls): the
			// Messages API refuses empty turns.
			continue
		case t.role == last:
			// The turn between them was empty: one turn again.
			w.raw(string(t.blocks.b))
			continue
		case last != "":
			w.close(']')
			w.close('}')
		}
		w.open('{')
		w.kstr("role", t.role)
		w.key("content")
		w.open('[')
		w.raw(string(t.blocks.b))
		last = t.role
	}
	if last != "" {
		w.close(']')
		w.close('}')
	}
	w.close(']')
	return nil
}

// trimPrefill returns the content of a final assistant message (a
// prefill, which the answer continues) without the whitespace it ends
// with: the Messages API refuses a final assistant turn that ends with
// whitespace, which Chat Completions servers take.
func trimPrefill(content gjson.Result) gjson.Result {
	trim := func(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) }
	switch {
	case content.Type == gjson.String:
		if t := trim(content.Str); t != content.Str {
			return gjson.Parse(string(appendString(nil, t)))
		}
	case content.IsArray():
		// The last text part, and those before it that are only
		// whitespace (left out as empty once trimmed).
		out := content.Raw
		parts := content.Array()
		for i := len(parts) - 1; i >= 0; i-- {
			typ := parts[i].Get("type").Str
			if typ != "text" && typ != "refusal" {
				break
			}
			t := parts[i].Get(typ).Str
			if trim(t) != t {
				if set, err := sjson.Set(out, strconv.Itoa(i)+"."+typ, trim(t)); err == nil {
					out = set
				}
			}
			if trim(t) != "" {
				break
			}
		}
		return gjson.Parse(out)
	}
	return content
}

// strRaw returns v's raw JSON when it is a string, else "". Values
// copied into the other format as strings go through it, so nothing but
// a string (never an object spanning lines) lands there.
func strRaw(v gjson.Result) string {
	if v.Type == gjson.String {
		return v.Raw
	}
	return `""`
}

// rawOr returns v's raw JSON, or def when v is absent or null.
func rawOr(v gjson.Result, def string) string {
	if present(v) {
		return v.Raw
	}
	return def
}

// textBlocks writes the content blocks of a chat message's content: a
// string, or an array of parts. Empty text is left out (the Messages API
// refuses empty text blocks). So is text that is only whitespace (the
// "\n\n" some models answer before their tool calls) in system and
// assistant messages: the Messages API refuses a message whose text is
// only whitespace. A user's (or a tool's) is kept, as leaving out a user's
// whole message would change the conversation. Images are allowed only
// where the Messages API takes them: user turns, tool results.
func textBlocks(w *jsonw, content gjson.Result, user bool) error {
	blank := func(s string) bool { return s == "" || !user && strings.TrimSpace(s) == "" }
	if content.Type == gjson.String {
		if !blank(content.Str) {
			writeTextBlock(w, content.Raw, gjson.Result{})
		}
		return nil
	}
	if !content.IsArray() {
		return nil // null: an assistant message with only tool calls
	}
	var err error
	content.ForEach(func(_, part gjson.Result) bool {
		switch typ := part.Get("type").Str; typ {
		case "text", "refusal":
			if t := part.Get(typ); !blank(t.Str) {
				writeTextBlock(w, t.Raw, part.Get("cache_control"))
			}
		case "image_url":
			if !user {
				err = unsupported("images are only accepted in user messages by Anthropic providers")
				break
			}
			err = imageBlock(w, part)
		default:
			err = unsupported("content parts of type %q cannot be served by an Anthropic provider", typ)
		}
		return err == nil
	})
	return err
}

func writeTextBlock(w *jsonw, textRaw string, cacheControl gjson.Result) {
	w.open('{')
	w.kstr("type", "text")
	w.kraw("text", textRaw)
	if cacheControl.IsObject() {
		w.kraw("cache_control", cacheControl.Raw)
	}
	w.close('}')
}

// imageBlock writes an image_url part as an image block: a data URL
// becomes a base64 source, anything else a URL source.
func imageBlock(w *jsonw, part gjson.Result) error {
	url := part.Get("image_url.url")
	if url.Type != gjson.String {
		url = part.Get("image_url") // some clients send the URL as a string
	}
	if url.Type != gjson.String || url.Str == "" {
		return unsupported("an image_url part has no url")
	}
	w.open('{')
	w.kstr("type", "image")
	w.key("source")
	w.open('{')
	if rest, ok := strings.CutPrefix(url.Str, "data:"); ok {
		media, data, ok := strings.Cut(rest, ";base64,")
		if !ok || media == "" {
			return unsupported("an image data URL must be base64 encoded with a media type")
		}
		w.kstr("type", "base64")
		w.kstr("media_type", media)
		w.kstr("data", data)
	} else {
		w.kstr("type", "url")
		w.kraw("url", url.Raw)
	}
	w.close('}')
	if cc := part.Get("cache_control"); cc.IsObject() {
		w.kraw("cache_control", cc.Raw)
	}
	w.close('}')
	return nil
}

// toolUses writes an assistant message's tool calls as tool_use blocks.
func toolUses(w *jsonw, calls gjson.Result) error {
	var err error
	calls.ForEach(func(_, c gjson.Result) bool {
		if t := c.Get("type").Str; t != "" && t != "function" {
			err = unsupported("tool calls of type %q cannot be served by an Anthropic provider", t)
			return false
		}
		args := c.Get("function.arguments")
		input := "{}"
		if args.Str != "" {
			v := gjson.Parse(args.Str)
			if !gjson.Valid(args.Str) || !v.IsObject() {
				err = unsupported("the arguments of tool call %s are not a JSON object", c.Get("id").Raw)
				return false
			}
			input = args.Str
		}
		w.open('{')
		w.kstr("type", "tool_use")
		w.kraw("id", toolUseID(c.Get("id")))
		w.kraw("name", strRaw(c.Get("function.name")))
		w.kraw("input", input)
		w.close('}')
		return true
	})
	return err
}

// toolUseID returns a tool call's id (raw JSON) as the Messages API
// takes it: letters, digits, _ and - only. Ids of other servers
// (functions.get_weather:0, call_0.1) reach Claude models when a
// conversation moves between providers; each character outside the set
// becomes _, the same in the call and in its result, so the two still
// match.
func toolUseID(v gjson.Result) string {
	id := v.Str
	valid := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
	}
	if v.Type != gjson.String || strings.IndexFunc(id, func(r rune) bool { return !valid(r) }) < 0 {
		return strRaw(v)
	}
	return string(appendString(nil, strings.Map(func(r rune) rune {
		if valid(r) {
			return r
		}
		return '_'
	}, id)))
}

// chatTools writes function tools as Messages tools.
func chatTools(w *jsonw, tools gjson.Result) error {
	w.key("tools")
	w.open('[')
	var err error
	tools.ForEach(func(_, t gjson.Result) bool {
		if typ := t.Get("type").Str; typ != "function" {
			err = unsupported("tools of type %q cannot be served by an Anthropic provider", typ)
			return false
		}
		f := t.Get("function")
		w.open('{')
		w.kraw("name", strRaw(f.Get("name")))
		if d := f.Get("description"); d.Type == gjson.String {
			w.kraw("description", d.Raw)
		}
		w.kraw("input_schema", rawOr(f.Get("parameters"), `{"type":"object","properties":{}}`))
		if cc := t.Get("cache_control"); cc.IsObject() {
			w.kraw("cache_control", cc.Raw)
		}
		w.close('}')
		return true
	})
	w.close(']')
	return err
}

// chatToolChoice writes tool_choice, folding parallel_tool_calls into it.
func chatToolChoice(w *jsonw, choice, parallel gjson.Result) error {
	typ, name := "auto", ""
	switch {
	case !present(choice):
	case choice.Type == gjson.String:
		switch choice.Str {
		case "auto":
		case "none":
			typ = "none"
		case "required":
			typ = "any"
		default:
			return unsupported("tool_choice %s is not one of auto, none or required", choice.Raw)
		}
	case choice.IsObject():
		name = choice.Get("function.name").Str
		if name == "" {
			return unsupported("tool_choice names no function")
		}
		typ = "tool"
	}
	serial := present(parallel) && !parallel.Bool()
	if !present(choice) && !serial {
		return nil // Anthropic's default: auto
	}
	w.key("tool_choice")
	w.open('{')
	w.kstr("type", typ)
	if name != "" {
		w.kstr("name", name)
	}
	if serial && typ != "none" {
		w.key("disable_parallel_tool_use")
		w.bool(true)
	}
	w.close('}')
	return nil
}

// messagesToChat translates Messages answers for a Chat Completions
// client.
type messagesToChat struct {
	includeUsage bool  // the client asked for the usage chunk
	jsonTool     bool  // the answer comes in the json_response tool
	created      int64 // the chunks' created time

	// stream state
	id, model string // raw JSON values from message_start
	usage     Usage
	finish    string
	blocks    []blockKind // kind of each content block, by index
	tools     int         // tool calls started so far
}

type blockKind uint8

const (
	blockIgnored blockKind = iota // thinking, or anything unknown
	blockText
	blockTool
	blockJSON // the json_response tool: its input is the content
)

// finishReason maps a Messages stop_reason to a chat finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop"
}

// Response translates a Messages answer to a chat completion.
func (x *messagesToChat) Response(body []byte) ([]byte, error) {
	if !gjson.ValidBytes(body) {
		return nil, malformed("the body is not JSON")
	}
	msg := gjson.ParseBytes(body)
	content := msg.Get("content")
	if !content.IsArray() {
		return nil, malformed("the message has no content array")
	}
	var text strings.Builder
	var textRaw string // the only text block, copied as is
	texts := 0
	var calls jsonw
	content.ForEach(func(_, b gjson.Result) bool {
		switch b.Get("type").Str {
		case "text":
			t := b.Get("text")
			texts++
			textRaw = strRaw(t)
			text.WriteString(t.Str)
		case "tool_use":
			input := rawOr(b.Get("input"), "{}")
			if x.jsonTool && b.Get("name").Str == jsonToolName {
				texts++
				textRaw = string(appendString(nil, input))
				text.WriteString(input)
				break
			}
			calls.open('{')
			calls.kraw("id", strRaw(b.Get("id")))
			calls.kstr("type", "function")
			calls.key("function")
			calls.open('{')
			calls.kraw("name", strRaw(b.Get("name")))
			calls.kstr("arguments", input)
			calls.close('}')
			calls.close('}')
		}
		return true
	})
	var u Usage
	u.ReadAnthropic(msg.Get("usage"))
	finish := finishReason(msg.Get("stop_reason").Str)
	if x.jsonTool && finish == "tool_calls" {
		finish = "stop"
	}

	w := jsonw{b: make([]byte, 0, len(body)+128)}
	w.open('{')
	w.kraw("id", strRaw(msg.Get("id")))
	w.kstr("object", "chat.completion")
	w.kint("created", x.created)
	w.kraw("model", x.modelOf(msg.Get("model")))
	w.key("choices")
	w.open('[')
	w.open('{')
	w.kint("index", 0)
	w.key("message")
	w.open('{')
	w.kstr("role", "assistant")
	w.key("content")
	switch texts {
	case 0:
		w.raw("null")
	case 1:
		w.raw(textRaw)
	default:
		w.str(text.String())
	}
	if len(calls.b) > 0 {
		w.key("tool_calls")
		w.open('[')
		w.raw(string(calls.b))
		w.close(']')
	}
	w.close('}')
	w.kraw("logprobs", "null")
	w.kstr("finish_reason", finish)
	w.close('}')
	w.close(']')
	w.key("usage")
	u.writeOpenAI(&w)
	w.close('}')
	return w.b, nil
}

// Error translates a Messages error body to OpenAI's error shape.
func (x *messagesToChat) Error(status int, body []byte) []byte {
	return openAIError(body)
}

// openAIError rewrites an Anthropic error body in OpenAI's shape.
func openAIError(body []byte) []byte {
	e := gjson.GetBytes(body, "error")
	if !gjson.ValidBytes(body) || !e.IsObject() || gjson.GetBytes(body, "type").Str != "error" {
		return body
	}
	var w jsonw
	w.open('{')
	w.key("error")
	writeOpenAIErrorDetail(&w, e)
	w.close('}')
	return w.b
}

func writeOpenAIErrorDetail(w *jsonw, e gjson.Result) {
	w.open('{')
	w.kraw("message", strRaw(e.Get("message")))
	w.kraw("type", rawOr(e.Get("type"), `"api_error"`))
	if contextLengthError(e) {
		// OpenAI's code and param for a prompt longer than the context
		// window, which OpenAI SDK users test for
		w.kstr("param", "messages")
		w.kstr("code", "context_length_exceeded")
	} else {
		w.kraw("param", "null")
		w.kraw("code", rawOr(e.Get("type"), "null"))
	}
	w.close('}')
}

// contextLengthError reports whether an Anthropic error says the prompt
// is longer than the model's context window: an invalid_request_error
// whose message starts "prompt is too long" (as in "prompt is too long:
// 210000 tokens > 200000 maximum").
func contextLengthError(e gjson.Result) bool {
	return e.Get("type").Str == "invalid_request_error" &&
		strings.HasPrefix(strings.ToLower(e.Get("message").Str), "prompt is too long")
}

// Event translates one Messages stream event to chat completion chunks.
func (x *messagesToChat) Event(dst, data []byte) ([]byte, error) {
	if !gjson.ValidBytes(data) {
		return dst, malformed("a stream event is not JSON")
	}
	ev := gjson.ParseBytes(data)
	w := jsonw{b: dst}
	switch ev.Get("type").Str {
	case "message_start":
		m := ev.Get("message")
		x.id, x.model = strRaw(m.Get("id")), x.modelOf(m.Get("model"))
		x.usage.ReadAnthropic(m.Get("usage"))
		x.chunk(&w, "", func(w *jsonw) {
			w.kstr("role", "assistant")
			w.kstr("content", "")
		})
	case "content_block_start":
		i := int(ev.Get("index").Int())
		if i < 0 || i > len(x.blocks) {
			return dst, malformed("content block %d out of order", i)
		}
		b := ev.Get("content_block")
		kind := blockIgnored
		switch b.Get("type").Str {
		case "text":
			kind = blockText
			if t := b.Get("text"); t.Str != "" {
				x.chunk(&w, "", func(w *jsonw) { w.kraw("content", t.Raw) })
			}
		case "tool_use":
			// Anthropic starts a call with an empty input and streams
			// it; a server that sends it whole here sends no deltas.
			input := ""
			if in := b.Get("input"); in.IsObject() {
				in.ForEach(func(_, _ gjson.Result) bool {
					input = in.Raw // (it has a member)
					return false
				})
			}
			if x.jsonTool && b.Get("name").Str == jsonToolName {
				kind = blockJSON
				if input != "" {
					x.chunk(&w, "", func(w *jsonw) { w.kstr("content", input) })
				}
				break
			}
			kind = blockTool
			x.chunk(&w, "", func(w *jsonw) {
				w.key("tool_calls")
				w.open('[')
				w.open('{')
				w.kint("index", int64(x.tools))
				w.kraw("id", strRaw(b.Get("id")))
				w.kstr("type", "function")
				w.key("function")
				w.open('{')
				w.kraw("name", strRaw(b.Get("name")))
				w.kstr("arguments", input)
				w.close('}')
				w.close('}')
				w.close(']')
			})
			x.tools++
		}
		if i == len(x.blocks) {
			x.blocks = append(x.blocks, kind)
		} else {
			x.blocks[i] = kind
		}
	case "content_block_delta":
		i := int(ev.Get("index").Int())
		if i < 0 || i >= len(x.blocks) {
			return dst, malformed("delta for unknown content block %d", i)
		}
		d := ev.Get("delta")
		switch x.blocks[i] {
		case blockText:
			if t := d.Get("text"); t.Str != "" {
				x.chunk(&w, "", func(w *jsonw) { w.kraw("content", t.Raw) })
			}
		case blockJSON:
			if p := d.Get("partial_json"); p.Str != "" {
				x.chunk(&w, "", func(w *jsonw) { w.kraw("content", p.Raw) })
			}
		case blockTool:
			if p := d.Get("partial_json"); p.Str != "" {
				tool := int64(x.tools - 1)
				x.chunk(&w, "", func(w *jsonw) {
					w.key("tool_calls")
					w.open('[')
					w.open('{')
					w.kint("index", tool)
					w.key("function")
					w.open('{')
					w.kraw("arguments", p.Raw)
					w.close('}')
					w.close('}')
					w.close(']')
				})
			}
		}
	case "message_delta":
		x.usage.ReadAnthropic(ev.Get("usage"))
		x.finish = finishReason(ev.Get("delta.stop_reason").Str)
		if x.jsonTool && x.finish == "tool_calls" {
			x.finish = "stop"
		}
		x.chunk(&w, x.finish, func(*jsonw) {})
	case "message_stop":
		if x.includeUsage {
			w.b = append(w.b, "data: "...)
			w.comma = false
			w.open('{')
			x.chunkHead(&w)
			w.kraw("choices", "[]")
			w.key("usage")
			x.usage.writeOpenAI(&w)
			w.close('}')
			w.b = append(w.b, "\n\n"...)
		}
		w.b = append(w.b, "data: [DONE]\n\n"...)
	case "error":
		w.b = append(w.b, "data: "...)
		w.comma = false
		w.open('{')
		w.key("error")
		writeOpenAIErrorDetail(&w, ev.Get("error"))
		w.close('}')
		w.b = append(w.b, "\n\n"...)
	}
	return w.b, nil
}

// modelOf returns the model an answer names (raw JSON), or the one the
// request named when the answer names none.
func (x *messagesToChat) modelOf(v gjson.Result) string {
	if v.Type == gjson.String && v.Str != "" {
		return v.Raw
	}
	return cmp.Or(x.model, `""`)
}

// chunkHead writes the fields every chunk starts with.
func (x *messagesToChat) chunkHead(w *jsonw) {
	w.kraw("id", cmp.Or(x.id, `""`))
	w.kstr("object", "chat.completion.chunk")
	w.kint("created", x.created)
	w.kraw("model", cmp.Or(x.model, `""`))
}

// chunk writes one chat.completion.chunk event with the delta fields
// written by delta and an optional finish reason.
func (x *messagesToChat) chunk(w *jsonw, finish string, delta func(w *jsonw)) {
	w.b = append(w.b, "data: "...)
	w.comma = false
	w.open('{')
	x.chunkHead(w)
	w.key("choices")
	w.open('[')
	w.open('{')
	w.kint("index", 0)
	w.key("delta")
	w.open('{')
	delta(w)
	w.close('}')
	w.kraw("logprobs", "null")
	if finish == "" {
		w.kraw("finish_reason", "null")
	} else {
		w.kstr("finish_reason", finish)
	}
	w.close('}')
	w.close(']')
	w.close('}')
	w.b = append(w.b, "\n\n"...)
}
