package strategies

import (
	"strings"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
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
// The text fields never share memory with the body. ReadPrompt reads
// the body in place and copies only the text it keeps, once (a string's
// escapes are decoded as encoding/json does; invalid UTF-8 stays as it
// is). It does not validate the body (the handler has) but never fails
// on any input either; what it cannot read it leaves out. Reading it
// again does nothing.
func (req *Request) ReadPrompt() {
	if req.promptRead {
		return
	}
	req.promptRead = true

	// The top level, in place; the system prompt goes first whatever the
	// order of the keys.
	var parts reqParts
	extra := 0
	jsonscan.EachMember(req.Body, 0, func(m jsonscan.Member) bool {
		switch string(m.Name) {
		case "messages":
			parts.messages = m.Value
		case "system":
			parts.system = m.Value
		case "instructions":
			parts.instructions = m.Value
		case "prompt":
			parts.prompt = m.Value
		case "input":
			parts.input = m.Value
		case "tools", "functions":
			if reqFirst(m.Value) != nil {
				req.HasTools = true
				extra += len(m.Value)
			}
		case "response_format", "output_format": // chat completions; anthropic
			req.JSONMode = req.JSONMode || reqJSONFormat(jsonscan.Lookup(m.Value, "type"))
		case "text", "output_config": // responses; anthropic
			req.JSONMode = req.JSONMode || reqJSONFormat(jsonscan.Lookup(m.Value, "format", "type"))
		}
		return true
	})

	// The messages, twice: to measure the text, then to copy it into a
	// conversation of that size. (Walking again takes about the time a
	// note of each piece of text would, and no memory; the notes took
	// several times the body on a body of many tiny messages.)
	w := reqWalk{lastUser: -1}
	parts.walk(&w)
	var conv strings.Builder
	if w.size > 0 {
		conv.Grow(w.size - 1) // (unescaping only shortens)
		c := reqWalk{out: &conv, lastUser: w.lastUser}
		parts.walk(&c)
		req.Conversation = conv.String()
		req.System = c.system.text(&parts, &c, roleSystem)
		req.LastUser = c.last.text(&parts, &c, roleUser)
	}
	req.HasImages = w.images
	req.TextTokens = tokens.Estimate(req.Conversation)
	req.PromptTokens = req.TextTokens + MessageTokenOverhead*w.messages + (extra+w.extra)/4 + w.ids
}

// reqParts are the members of a request that hold its prompt.
type reqParts struct {
	messages, system, instructions, prompt, input []byte
}

// walk reads the prompt's text with w, in the order of the conversation.
func (p *reqParts) walk(w *reqWalk) {
	if p.system != nil {
		w.content(p.system, roleSystem)
		w.endMessage()
	}
	if reqIsString(p.instructions) {
		w.add(p.instructions, roleSystem)
		w.endMessage()
	}
	if reqIsArray(p.messages) {
		jsonscan.EachElement(p.messages, w.item)
	}
	if p.prompt != nil {
		w.prompt(p.prompt)
	}
	if first := reqFirst(p.input); len(first) > 0 && first[0] == '{' {
		jsonscan.EachElement(p.input, w.item) // responses: input items
	} else if p.input != nil {
		w.prompt(p.input) // embeddings, or a responses input string
	}
}

// The roles that matter to the text fields.
const (
	roleOther  uint8 = iota // assistant, tool and any other
	roleSystem              // system and developer
	roleUser
)

// reqWalk walks the text of a request's messages, to measure it or to
// write it out. Its methods take the role of the text.
type reqWalk struct {
	out  *strings.Builder // where the text goes, or nil to measure it
	only uint8            // if not 0, the one role to write (roleUser: of the last user turn)

	turn     int32 // the current message or prompt
	lastUser int32 // the last user turn, or -1 (to write: known from measuring)
	userTurn bool  // the current message is a user turn
	piece    int   // pieces of text so far

	size     int // bytes of text as written, with a line break each
	messages int // messages that get MessageTokenOverhead
	extra    int // bytes of tool calls and inputs
	ids      int // prompt tokens given as token ids
	images   bool

	system, last reqLines // where the system prompt and the last user turn lie in out
}

// reqLines are the lines of one role in the conversation.
type reqLines struct {
	n, first, last int // how many, the first's and the last's piece number
	start, end     int // where the first begins and the last ends
}

// note notes the piece number i at out[start:end].
func (l *reqLines) note(i, start, end int) {
	if l.n == 0 {
		l.first, l.start = i, start
	}
	l.n++
	l.last, l.end = i, end
}

// text returns the lines, one per line: a part of the conversation when
// they follow each other there, else read again from parts.
func (l *reqLines) text(parts *reqParts, c *reqWalk, role uint8) string {
	switch {
	case l.n == 0:
		return ""
	case l.n == l.last-l.first+1:
		return c.out.String()[l.start:l.end]
	}
	var b strings.Builder
	b.Grow(l.end - l.start)
	parts.walk(&reqWalk{out: &b, only: role, lastUser: c.lastUser})
	return b.String()
}

// add appends the string v, if it is one, to the current message.
func (w *reqWalk) add(v []byte, role uint8) {
	if role == roleUser {
		w.userTurn = true
	}
	text, escaped, ok := jsonscan.Content(v)
	switch {
	case !ok || len(text) == 0:
		return
	case w.out == nil:
		w.size += len(text) + 1
		return
	case w.only != 0 && (role != w.only || role == roleUser && w.turn != w.lastUser):
		return
	}
	if w.out.Len() > 0 {
		w.out.WriteByte('\n')
	}
	start := w.out.Len()
	if escaped {
		jsonscan.Unescape(w.out, text)
	} else {
		w.out.Write(text)
	}
	switch {
	case role == roleSystem:
		w.system.note(w.piece, start, w.out.Len())
	case role == roleUser && w.turn == w.lastUser:
		w.last.note(w.piece, start, w.out.Len())
	}
	w.piece++
}

// endTurn closes the current message or prompt.
func (w *reqWalk) endTurn() {
	if w.userTurn && w.out == nil {
		w.lastUser = w.turn
	}
	w.turn++
	w.userTurn = false
}

// endMessage closes the current message.
func (w *reqWalk) endMessage() {
	w.endTurn()
	w.messages++
}

// item reads one element of messages or of Responses input items: a
// chat or Anthropic message, or a Responses input item. Its signature
// suits jsonscan.EachElement.
func (w *reqWalk) item(m []byte) bool {
	if m[0] == '"' { // tolerate bare strings as user turns
		w.add(m, roleUser)
		w.endMessage()
		return true
	}
	if m[0] != '{' {
		return true
	}
	var typ, role, content, output []byte
	jsonscan.EachMember(m, 0, func(f jsonscan.Member) bool {
		switch string(f.Name) {
		case "type":
			typ = f.Value
		case "role":
			role = f.Value
		case "content":
			content = f.Value
		case "output": // responses function_call_output
			output = f.Value
		case "tool_calls", "function_call", "arguments", "input":
			// chat tool calls; responses function_call arguments and
			// custom_tool_call input
			w.extra += len(f.Value)
		}
		return true
	})
	switch string(reqText(typ)) {
	case "", "message":
		r := roleOther
		switch string(reqText(role)) {
		case "system", "developer":
			r = roleSystem
		case "user":
			r = roleUser
		}
		w.content(content, r)
	case "function_call_output", "custom_tool_call_output":
		w.content(output, roleOther)
	case "function_call", "custom_tool_call":
	default: // reasoning items, references, built-in tool calls
		return true
	}
	w.endMessage()
	return true
}

// content reads a message's content: a string or a list of parts.
func (w *reqWalk) content(v []byte, role uint8) {
	if reqIsString(v) {
		w.add(v, role)
		return
	}
	if !reqIsArray(v) {
		return
	}
	jsonscan.EachElement(v, func(p []byte) bool {
		switch p[0] {
		case '"':
			w.add(p, role)
		case '{':
			w.part(p, role)
		}
		return true
	})
}

// part reads one content part or block.
func (w *reqWalk) part(p []byte, role uint8) {
	var typ, text, sub []byte
	jsonscan.EachMember(p, 0, func(f jsonscan.Member) bool {
		switch string(f.Name) {
		case "type":
			typ = f.Value
		case "text", "thinking", "refusal":
			if reqIsString(f.Value) {
				text = f.Value
			}
		case "content": // anthropic tool_result
			sub = f.Value
		case "input": // anthropic tool_use
			w.extra += len(f.Value)
		}
		return true
	})
	switch string(reqText(typ)) {
	case "text", "input_text", "output_text":
		w.add(text, role)
	case "image_url", "image", "input_image":
		w.images = true
	case "tool_result":
		w.content(sub, roleOther)
		return // tool results alone do not make a user turn
	case "thinking", "refusal":
		w.add(text, roleOther)
	}
	if role == roleUser {
		// an image- or audio-only user message is a user turn too
		w.userTurn = true
	}
}

// prompt reads a /completions prompt or an /embeddings input: a string,
// a list of strings, or token ids, all one user turn.
func (w *reqWalk) prompt(v []byte) {
	switch {
	case reqIsString(v):
		w.add(v, roleUser)
	case reqIsArray(v):
		jsonscan.EachElement(v, func(e []byte) bool {
			switch c := e[0]; {
			case c == '"':
				w.add(e, roleUser)
			case c == '-' || '0' <= c && c <= '9':
				w.ids++
			case c == '[':
				jsonscan.EachElement(e, func([]byte) bool { w.ids++; return true })
			}
			return true
		})
	default:
		return
	}
	w.endTurn()
}

// reqText returns the text of the string value v, unescaped, or nil when
// v is no string. It copies only a string that holds escapes.
func reqText(v []byte) []byte {
	text, escaped, ok := jsonscan.Content(v)
	if escaped {
		var b strings.Builder
		jsonscan.Unescape(&b, text)
		return []byte(b.String())
	}
	if !ok {
		return nil
	}
	return text
}

// reqIsString reports whether the value v is a string.
func reqIsString(v []byte) bool { return len(v) > 0 && v[0] == '"' }

// reqIsArray reports whether the value v is an array.
func reqIsArray(v []byte) bool { return len(v) > 0 && v[0] == '[' }

// reqFirst returns the first element of the array v, or nil when v is
// no array or an empty one.
func reqFirst(v []byte) []byte {
	var first []byte
	jsonscan.EachElement(v, func(e []byte) bool { first = e; return false })
	return first
}

// reqJSONFormat reports whether an output format type, a JSON value,
// asks for JSON.
func reqJSONFormat(typ []byte) bool {
	switch string(reqText(typ)) {
	case "json_object", "json_schema":
		return true
	}
	return false
}
