package strategies

import (
	"encoding/json"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/tokens"
)

// MessageTokenOverhead is the number of tokens PromptTokens adds for
// each message (and for a system prompt or instructions) on top of its
// text: role markers and separators.
const MessageTokenOverhead = 4

// BuildRequest builds the request view of body, a valid JSON request to
// endpoint, with its prompt read (see ReadPrompt).
func BuildRequest(endpoint string, body []byte) Request {
	req := Request{Endpoint: endpoint, Body: body}
	req.ReadPrompt()
	return req
}

// ReadPrompt reads the prompt of req.Body, a valid JSON request to
// req.Endpoint of any API llm_route speaks: OpenAI /chat/completions,
// /completions, /embeddings and /responses, and Anthropic /messages. It
// fills System, LastUser, Conversation, HasTools, HasImages, JSONMode,
// PromptTokens and TextTokens.
//
// The text fields hold the text of text parts only, one part per line:
// Conversation is the system prompt (Anthropic system, Responses
// instructions, system and developer messages) followed by every
// message, tool results included; System is the system prompt; LastUser
// is the text of the last user turn. A user message that carries nothing
// but tool results (Anthropic tool_result blocks) is not a user turn,
// just as an OpenAI tool message is not; one with only an image is. For
// /completions and /embeddings the prompt or input is the one user turn.
//
// PromptTokens estimates the prompt: the conversation text, plus
// MessageTokenOverhead per message, plus a quarter of the bytes of tool
// definitions, tool calls and tool inputs, plus any prompt given as token
// ids. Images and audio are not counted.
//
// The text fields never share memory with the body. ReadPrompt does
// not validate the body (the handler has) but never fails on any input
// either; what it cannot read it leaves out.
func (req *Request) ReadPrompt() {
	root := gjson.ParseBytes(req.Body) // copies the body
	if !root.IsObject() {
		return
	}

	// The system prompt goes first whatever the order of the keys.
	var w reqWalk
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
			req.JSONMode = req.JSONMode || reqJSONFormat(v.Get("type").Str)
		case "text", "output_config": // responses; anthropic
			req.JSONMode = req.JSONMode || reqJSONFormat(v.Get("format.type").Str)
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
	req.System = reqJoin(conv, w.system)
	req.LastUser = reqJoin(conv, w.lastUser)
	req.HasImages = w.images
	req.TextTokens = tokens.Estimate(conv)
	req.PromptTokens = req.TextTokens + MessageTokenOverhead*w.messages + w.extra/4 + w.ids
}

// reqSpan is where a piece of text lies in the conversation.
type reqSpan struct{ start, end int }

// reqWalk gathers the text of a request's messages. Its methods take
// the role of the text by its API name; roles other than "system" and
// "user" count only for the conversation.
type reqWalk struct {
	conv     strings.Builder
	system   []reqSpan // the system prompt's text
	turn     []reqSpan // the user text of the current message
	lastUser []reqSpan // the text of the last user turn
	userTurn bool      // the current message is a user turn
	messages int       // messages that get MessageTokenOverhead
	extra    int       // bytes of tool definitions, calls and inputs
	ids      int       // prompt tokens given as token ids
	images   bool
}

// add appends the string v, if it is one, to the current message.
func (w *reqWalk) add(v gjson.Result, role string) {
	if role == "user" {
		w.userTurn = true
	}
	s := reqString(v)
	if s == "" {
		return
	}
	if w.conv.Len() > 0 {
		w.conv.WriteByte('\n')
	}
	sp := reqSpan{start: w.conv.Len(), end: w.conv.Len() + len(s)}
	w.conv.WriteString(s)
	switch role {
	case "system":
		w.system = append(w.system, sp)
	case "user":
		w.turn = append(w.turn, sp)
	}
}

// endTurn closes the current message or prompt.
func (w *reqWalk) endTurn() {
	if w.userTurn {
		w.lastUser, w.turn = w.turn, w.lastUser
	}
	w.turn = w.turn[:0]
	w.userTurn = false
}

// endMessage closes the current message.
func (w *reqWalk) endMessage() {
	w.endTurn()
	w.messages++
}

// item reads one element of messages or of Responses input items: a
// chat or Anthropic message, or a Responses input item. Its signature
// suits gjson's ForEach.
func (w *reqWalk) item(_, m gjson.Result) bool {
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
func (w *reqWalk) content(v gjson.Result, role string) {
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
func (w *reqWalk) part(p gjson.Result, role string) {
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
func (w *reqWalk) prompt(v gjson.Result) {
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

// reqString returns the string v, or "" when v is no string. gjson
// decodes a surrogate escape and the escape after it as a pair even when
// they make none; encoding/json turns each lone surrogate into U+FFFD,
// so strings with a surrogate escape are left to it.
func reqString(v gjson.Result) string {
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

// reqJoin returns the text at spans of conv, one span per line.
func reqJoin(conv string, spans []reqSpan) string {
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

// reqJSONFormat reports whether an output format type asks for JSON.
func reqJSONFormat(typ string) bool {
	return typ == "json_object" || typ == "json_schema"
}
