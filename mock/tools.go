package mock

import (
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// toolCall is the single tool call the mock answers with, instead of
// text, when the request offers tools.
type toolCall struct {
	id        string   // call_... (OpenAI) or toolu_... (Anthropic)
	name      string   // the called tool
	arguments string   // the arguments, a JSON object
	pieces    []string // arguments split into stream chunks, at least 2
}

// newToolCall returns the tool call that answers req, or nil if the
// answer is text: when the request offers no tools, forbids them with
// its tool_choice, or ends with a tool result. The called tool is the
// one tool_choice forces, else the first the client can run.
func newToolCall(ep endpoint, req gjson.Result) *toolCall {
	tools := req.Get("tools").Array()
	if len(tools) == 0 || endsWithToolResult(ep, req) {
		return nil
	}
	choice := req.Get("tool_choice")

	var id, forced, namePath, schemaPath string
	var callable func(tool gjson.Result) bool
	switch ep {
	case endpointChat:
		if choice.Type == gjson.String && choice.Str == "none" {
			return nil
		}
		if choice.Get("type").String() == "function" {
			forced = choice.Get("function.name").String()
		}
		id, namePath, schemaPath = "call_"+randomID(), "function.name", "function.parameters"
		callable = func(tool gjson.Result) bool {
			return tool.Get("type").String() == "function"
		}
	case endpointMessages:
		if choice.Get("type").String() == "none" {
			return nil
		}
		if choice.Get("type").String() == "tool" {
			forced = choice.Get("name").String()
		}
		id, namePath, schemaPath = "toolu_"+randomID(), "name", "input_schema"
		callable = func(tool gjson.Result) bool {
			// server tools (web search and the like) have a versioned
			// type and are run by the provider
			typ := tool.Get("type").String()
			return typ == "" || typ == "custom"
		}
	default:
		return nil
	}

	for _, tool := range tools {
		name := tool.Get(namePath).String()
		if name == "" || !callable(tool) {
			continue
		}
		if forced == "" || name == forced {
			return buildToolCall(id, name, tool.Get(schemaPath))
		}
	}
	if forced != "" {
		// not among the tools: call it with what an empty schema gives
		return buildToolCall(id, forced, gjson.Result{})
	}
	return nil
}

// endsWithToolResult reports whether the conversation in req ends with
// the result of a tool call, which the mock answers with text.
func endsWithToolResult(ep endpoint, req gjson.Result) bool {
	msgs := req.Get("messages").Array()
	if len(msgs) == 0 {
		return false
	}
	last := msgs[len(msgs)-1]
	if ep == endpointChat {
		role := last.Get("role").String()
		return role == "tool" || role == "function"
	}
	if last.Get("role").String() != "user" {
		return false
	}
	for _, block := range last.Get("content").Array() {
		if block.Get("type").String() == "tool_result" {
			return true
		}
	}
	return false
}

// buildToolCall makes a call of the named tool with arguments that
// fit schema.
func buildToolCall(id, name string, schema gjson.Result) *toolCall {
	args := string(marshal(mockArguments(schema)))
	return &toolCall{id: id, name: name, arguments: args, pieces: splitArguments(args)}
}

// mockArguments returns an object with a value for each property the
// schema requires, or for every property if it requires none. Encoded,
// its keys are sorted.
func mockArguments(schema gjson.Result) obj {
	props := schema.Get("properties")
	var keys []string
	for _, k := range schema.Get("required").Array() {
		if k.Type == gjson.String {
			keys = append(keys, k.Str)
		}
	}
	if len(keys) == 0 && props.IsObject() {
		props.ForEach(func(k, _ gjson.Result) bool {
			keys = append(keys, k.String())
			return true
		})
	}
	args := obj{}
	for _, k := range keys {
		args[k] = mockValue(props.Get(gjson.Escape(k)))
	}
	return args
}

// mockValue is a value that fits the property schema prop: its const,
// its first enum value, or a value of its type ("mock" if it has none).
func mockValue(prop gjson.Result) any {
	if c := prop.Get("const"); c.Exists() {
		return c.Value()
	}
	if enum := prop.Get("enum").Array(); len(enum) > 0 {
		return enum[0].Value()
	}
	typ := prop.Get("type")
	if typ.IsArray() {
		// e.g. ["string", "null"]: the first type that is not null
		var first string
		for _, t := range typ.Array() {
			if t.String() != "null" {
				first = t.String()
				break
			}
		}
		typ = gjson.Result{Type: gjson.String, Str: first}
	}
	switch typ.String() {
	case "integer", "number":
		return 1
	case "boolean":
		return true
	case "array":
		return []any{}
	case "object":
		return obj{}
	case "null":
		return nil
	}
	return "mock"
}

// splitArguments splits the arguments JSON into stream chunks of up
// to 4 bytes, about one token each, and into at least 2 chunks. It
// cuts only between characters.
func splitArguments(args string) []string {
	size := max(1, min(4, (len(args)+1)/2))
	var pieces []string
	for len(args) > 0 {
		n := 0
		for n < len(args) && n < size {
			_, w := utf8.DecodeRuneInString(args[n:])
			n += w
		}
		pieces = append(pieces, args[:n])
		args = args[n:]
	}
	return pieces
}
