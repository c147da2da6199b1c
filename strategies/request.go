package strategies

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/tokens"
)

// MessageTokenOverhead is the number of tokens PromptTokens adds for
// each message (and for a system prompt or instructions) on top of its
// text: role markers and separators.
const MessageTokenOverhead = 4

// BuildRequest builds the request view of body, a valid JSON request to
// endpoint of any API llm_route speaks: OpenAI /chat/completions,
// /completions, /embeddings and /responses, and Anthropic /messages. It
// fills Endpoint, Body, System, LastUser, Conversation, HasTools,
// HasImages, JSONMode and PromptTokens; the caller sets Model, Stream,
// MaxTokens and Header.
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
// BuildRequest walks the body without gjson's byte-by-byte string scans:
// it finds the ends of strings with strings.IndexByte, so that a long
// prompt or a base64 image is skipped at memory speed, and copies the
// text it keeps once, unescaping on the way; the text fields never share
// memory with the body. It does not validate the body (the handler has)
// but never fails on any input either; what it cannot read it leaves
// out. Most of its time on long prompts is tokens.Estimate's.
func BuildRequest(endpoint string, body []byte) Request {
	req := Request{Endpoint: endpoint, Body: body}
	// The view of the body as a string is only read during this call.
	s := reqJSON(unsafe.String(unsafe.SliceData(body), len(body)))
	p := s.ws(0)
	if p >= len(s) || s[p] != '{' {
		return req
	}

	// The top-level members; the system prompt goes first whatever the
	// order of the keys.
	var messages, system, instructions, prompt, input reqSpan
	var t reqText
	t.s = s
	t.segs = t.buf[:0]
	t.lastUser = -1
	for i := p + 1; ; {
		k0, k1, v0, v1, ok := s.member(i)
		if !ok {
			break
		}
		i = v1
		switch s.key(k0, k1) {
		case "messages":
			messages = reqSpan{v0, v1}
		case "system":
			system = reqSpan{v0, v1}
		case "instructions":
			instructions = reqSpan{v0, v1}
		case "prompt":
			prompt = reqSpan{v0, v1}
		case "input":
			input = reqSpan{v0, v1}
		case "tools", "functions":
			if s.nonEmptyArray(v0) {
				req.HasTools = true
				t.extra += v1 - v0
			}
		case "response_format": // chat completions
			req.JSONMode = req.JSONMode || reqJSONFormat(s.get(v0, v1, "type"))
		case "text": // responses: text.format
			req.JSONMode = req.JSONMode || reqJSONFormat(s.get(v0, v1, "format.type"))
		case "output_format": // anthropic (structured outputs beta)
			req.JSONMode = req.JSONMode || reqJSONFormat(s.get(v0, v1, "type"))
		case "output_config": // anthropic: output_config.format
			req.JSONMode = req.JSONMode || reqJSONFormat(s.get(v0, v1, "format.type"))
		}
	}

	if system.ok() {
		t.content(system, reqRoleSystem)
		t.endMessage()
	}
	if instructions.ok() && s[instructions.start] == '"' {
		t.add(instructions, reqRoleSystem)
		t.endMessage()
	}
	if messages.ok() {
		t.items(messages)
	}
	if prompt.ok() {
		t.prompt(prompt)
	}
	if input.ok() {
		if s[input.start] == '[' && s.firstIsObject(input.start) {
			t.items(input) // responses: input items
		} else {
			t.prompt(input) // embeddings, or a responses input string
		}
	}
	req.HasImages = t.images

	req.Conversation, req.System, req.LastUser = t.build()
	req.PromptTokens = tokens.Estimate(req.Conversation) +
		MessageTokenOverhead*t.overhead + t.extra/4 + t.ids
	return req
}

// reqRole is the role a text segment counts for.
type reqRole uint8

const (
	reqRoleOther reqRole = iota
	reqRoleSystem
	reqRoleUser
)

// reqSeg is a piece of text of message msg, still JSON-escaped.
type reqSeg struct {
	raw  string
	msg  int32
	role reqRole
}

// reqText gathers the text of a request's messages.
type reqText struct {
	s        reqJSON
	buf      [16]reqSeg
	segs     []reqSeg
	msg      int32 // index of the current message
	lastUser int32 // index of the last user turn, or -1
	overhead int   // messages that get MessageTokenOverhead
	extra    int   // bytes of tool definitions, calls and inputs
	ids      int   // prompt tokens given as token ids
	images   bool
}

// add appends the string at v to the current message; v must be a
// string.
func (t *reqText) add(v reqSpan, role reqRole) {
	if role == reqRoleUser {
		t.lastUser = t.msg
	}
	if v.end-v.start > 2 {
		t.segs = append(t.segs, reqSeg{raw: string(t.s[v.start+1 : v.end-1]), msg: t.msg, role: role})
	}
}

// endMessage closes the current message.
func (t *reqText) endMessage() {
	t.msg++
	t.overhead++
}

// items reads an array of messages or Responses input items.
func (t *reqText) items(v reqSpan) {
	if t.s[v.start] != '[' {
		return
	}
	for i := v.start + 1; ; {
		e, ok := t.s.elem(i)
		if !ok {
			return
		}
		i = e.end
		t.item(e)
	}
}

// item reads one message: a chat or Anthropic message, or a Responses
// input item.
func (t *reqText) item(m reqSpan) {
	s := t.s
	switch s[m.start] {
	case '"': // tolerate bare strings as user turns
		t.add(m, reqRoleUser)
		t.endMessage()
		return
	case '{':
	default:
		return
	}
	var typ, role, content, output reqSpan
	for i := m.start + 1; ; {
		k0, k1, v0, v1, ok := s.member(i)
		if !ok {
			break
		}
		i = v1
		switch s.key(k0, k1) {
		case "type":
			typ = reqSpan{v0, v1}
		case "role":
			role = reqSpan{v0, v1}
		case "content":
			content = reqSpan{v0, v1}
		case "output": // responses function_call_output
			output = reqSpan{v0, v1}
		case "tool_calls", "function_call", "arguments", "input":
			// chat tool calls; responses function_call arguments and
			// custom_tool_call input
			t.extra += v1 - v0
		}
	}
	switch s.str(typ) {
	case "", "message":
	case "function_call_output", "custom_tool_call_output":
		t.content(output, reqRoleOther)
		t.endMessage()
		return
	case "function_call", "custom_tool_call":
		t.endMessage()
		return
	default: // reasoning items, references, built-in tool calls
		return
	}
	r := reqRoleOther
	switch s.str(role) {
	case "user":
		r = reqRoleUser
	case "system", "developer":
		r = reqRoleSystem
	}
	t.content(content, r)
	t.endMessage()
}

// content reads a message's content: a string or a list of parts.
func (t *reqText) content(v reqSpan, role reqRole) {
	if !v.ok() {
		return
	}
	s := t.s
	switch s[v.start] {
	case '"':
		t.add(v, role)
	case '[':
		for i := v.start + 1; ; {
			e, ok := s.elem(i)
			if !ok {
				return
			}
			i = e.end
			switch s[e.start] {
			case '"':
				t.add(e, role)
			case '{':
				t.part(e, role)
			}
		}
	}
}

// part reads one content part or block.
func (t *reqText) part(p reqSpan, role reqRole) {
	s := t.s
	var typ, text, sub reqSpan
	for i := p.start + 1; ; {
		k0, k1, v0, v1, ok := s.member(i)
		if !ok {
			break
		}
		i = v1
		switch s.key(k0, k1) {
		case "type":
			typ = reqSpan{v0, v1}
		case "text", "thinking", "refusal":
			if s[v0] == '"' {
				text = reqSpan{v0, v1}
			}
		case "content": // anthropic tool_result
			sub = reqSpan{v0, v1}
		case "input": // anthropic tool_use
			t.extra += v1 - v0
		}
	}
	switch s.str(typ) {
	case "text", "input_text", "output_text":
		if text.ok() {
			t.add(text, role)
		}
	case "image_url", "image", "input_image":
		t.images = true
	case "tool_result":
		t.content(sub, reqRoleOther)
		return // tool results alone do not make a user turn
	case "thinking", "refusal":
		if text.ok() {
			t.add(text, reqRoleOther)
		}
	}
	if role == reqRoleUser {
		// an image- or audio-only user message is a user turn too
		t.lastUser = t.msg
	}
}

// prompt reads a /completions prompt or an /embeddings input: a string,
// a list of strings, or token ids, all one user turn.
func (t *reqText) prompt(v reqSpan) {
	s := t.s
	switch s[v.start] {
	case '"':
		t.add(v, reqRoleUser)
	case '[':
		for i := v.start + 1; ; {
			e, ok := s.elem(i)
			if !ok {
				break
			}
			i = e.end
			switch c := s[e.start]; {
			case c == '"':
				t.add(e, reqRoleUser)
			case c == '-' || ('0' <= c && c <= '9'):
				t.ids++
			case c == '[':
				for j := e.start + 1; ; {
					id, ok := s.elem(j)
					if !ok {
						break
					}
					j = id.end
					t.ids++
				}
			}
		}
	default:
		return
	}
	t.msg++
}

// build joins the segments, one per line, and returns the conversation,
// the system prompt and the last user turn; the latter two are slices of
// the conversation when their segments are adjacent.
func (t *reqText) build() (conv, system, lastUser string) {
	n := 0
	for _, sg := range t.segs {
		n += len(sg.raw) + 1 // unescaping never makes text longer
	}
	if n == 0 {
		return "", "", ""
	}
	var b strings.Builder
	b.Grow(n - 1)
	sys := reqRange{start: -1}
	usr := reqRange{start: -1}
	for i, sg := range t.segs {
		if i > 0 {
			b.WriteByte('\n')
		}
		start := b.Len()
		reqUnescape(&b, sg.raw)
		sys.note(t.isSystem(i), i, start, b.Len())
		usr.note(t.isLastUser(i), i, start, b.Len())
	}
	conv = b.String()
	return conv, sys.text(t, conv, t.isSystem), usr.text(t, conv, t.isLastUser)
}

func (t *reqText) isSystem(i int) bool { return t.segs[i].role == reqRoleSystem }

func (t *reqText) isLastUser(i int) bool {
	return t.segs[i].role == reqRoleUser && t.segs[i].msg == t.lastUser
}

// reqRange tracks where the segments of one kind lie in the conversation.
type reqRange struct {
	start, end int
	last       int  // index of the last matching segment
	split      bool // other segments lie between matching ones
}

func (r *reqRange) note(match bool, i, start, end int) {
	if !match {
		return
	}
	if r.start < 0 {
		r.start = start
	} else if r.last != i-1 {
		r.split = true
	}
	r.end, r.last = end, i
}

// text returns the matching segments' text: a slice of conv when they
// are adjacent, else a fresh join.
func (r *reqRange) text(t *reqText, conv string, match func(int) bool) string {
	if r.start < 0 {
		return ""
	}
	if !r.split {
		return conv[r.start:r.end]
	}
	var b strings.Builder
	for i := range t.segs {
		if match(i) {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			reqUnescape(&b, t.segs[i].raw)
		}
	}
	return b.String()
}

// reqJSONFormat reports whether an output format type asks for JSON.
func reqJSONFormat(typ string) bool {
	return typ == "json_object" || typ == "json_schema"
}

// reqSpan is the extent of a JSON value in the body; the zero span is no
// value.
type reqSpan struct{ start, end int }

func (v reqSpan) ok() bool { return v.end > v.start }

// reqJSON is a minimal reader of JSON text that is known to be valid.
// It finds the ends of strings with strings.IndexByte, so that it skips
// long strings (prompts, base64 images) at memory speed, which gjson,
// going byte by byte and re-reading every level of nesting, does not.
// On invalid input it stops early but never panics or loops.
type reqJSON string

// ws skips white space from i.
func (s reqJSON) ws(i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
		i++
	}
	return i
}

// strEnd returns the index after the string that starts at i (at the
// opening quote), or len(s).
func (s reqJSON) strEnd(i int) int {
	for j := i + 1; j < len(s); {
		k := strings.IndexByte(string(s[j:]), '"')
		if k < 0 {
			break
		}
		q := j + k
		n := 0 // backslashes before the quote
		for p := q - 1; p > i && s[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
	return len(s)
}

// valueEnd returns the index after the value that starts at i.
func (s reqJSON) valueEnd(i int) int {
	if i >= len(s) {
		return len(s)
	}
	switch s[i] {
	case '"':
		return s.strEnd(i)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				i = s.strEnd(i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(s)
	}
	for i < len(s) {
		switch s[i] {
		case ',', '}', ']', ' ', '\n', '\r', '\t':
			return i
		}
		i++
	}
	return i
}

// member reads the object member at i, just after the '{' or after the
// previous member's value: the key between k0 and k1 (without the
// quotes) and the value between v0 and v1. ok is false at the end of the
// object.
func (s reqJSON) member(i int) (k0, k1, v0, v1 int, ok bool) {
	i = s.ws(i)
	if i < len(s) && s[i] == ',' {
		i = s.ws(i + 1)
	}
	if i >= len(s) || s[i] != '"' {
		return
	}
	e := s.strEnd(i)
	if e >= len(s) {
		return
	}
	k0, k1 = i+1, e-1
	i = s.ws(e)
	if i >= len(s) || s[i] != ':' {
		return
	}
	v0 = s.ws(i + 1)
	v1 = s.valueEnd(v0)
	return k0, k1, v0, v1, v1 > v0
}

// elem reads the array element at i, just after the '[' or after the
// previous element. ok is false at the end of the array.
func (s reqJSON) elem(i int) (v reqSpan, ok bool) {
	i = s.ws(i)
	if i < len(s) && s[i] == ',' {
		i = s.ws(i + 1)
	}
	if i >= len(s) || s[i] == ']' || s[i] == '}' {
		return
	}
	v = reqSpan{i, s.valueEnd(i)}
	return v, v.ok()
}

// key returns the key between k0 and k1, unescaped if need be.
func (s reqJSON) key(k0, k1 int) string {
	k := string(s[k0:k1])
	if strings.IndexByte(k, '\\') < 0 {
		return k
	}
	var b strings.Builder
	reqUnescape(&b, k)
	return b.String()
}

// str returns the string value at v, or "" when v is no string. The
// result may share memory with the body.
func (s reqJSON) str(v reqSpan) string {
	if !v.ok() || s[v.start] != '"' || v.end-v.start < 2 {
		return ""
	}
	return s.key(v.start+1, v.end-1)
}

// nonEmptyArray reports whether the value at i is an array with an
// element.
func (s reqJSON) nonEmptyArray(i int) bool {
	if s[i] != '[' {
		return false
	}
	j := s.ws(i + 1)
	return j < len(s) && s[j] != ']'
}

// firstIsObject reports whether the first element of the array at i is
// an object.
func (s reqJSON) firstIsObject(i int) bool {
	j := s.ws(i + 1)
	return j < len(s) && s[j] == '{'
}

// get returns the string at path (gjson syntax) in the object between
// v0 and v1.
func (s reqJSON) get(v0, v1 int, path string) string {
	if s[v0] != '{' {
		return ""
	}
	return gjson.Get(string(s[v0:v1]), path).Str
}

// reqUnescape writes the JSON string contents raw to b, unescaped.
// Invalid escapes are written as they are; lone surrogates become
// U+FFFD, as encoding/json does.
func reqUnescape(b *strings.Builder, raw string) {
	for {
		k := strings.IndexByte(raw, '\\')
		if k < 0 || k+1 >= len(raw) {
			b.WriteString(raw)
			return
		}
		b.WriteString(raw[:k])
		c := raw[k+1]
		raw = raw[k+2:]
		switch c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			r, ok := reqHex4(raw)
			if !ok {
				b.WriteString(`\u`)
				continue
			}
			raw = raw[4:]
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if len(raw) >= 6 && raw[0] == '\\' && raw[1] == 'u' {
					if lo, ok := reqHex4(raw[2:]); ok {
						if d := utf16.DecodeRune(r, lo); d != utf8.RuneError {
							r2 = d
							raw = raw[6:]
						}
					}
				}
				r = r2
			}
			b.WriteRune(r)
		default: // \" \\ \/ and anything invalid
			b.WriteByte(c)
		}
	}
}

// reqHex4 decodes the four hex digits at the start of s.
func reqHex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for i := range 4 {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
