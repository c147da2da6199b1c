package llmroute

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/tidwall/gjson"
)

// synthStream writes a whole answer in the client's format (endpoint's)
// as the event stream the same API would have sent: for chat
// completions and completions, chunks (a role, the content, the tool
// calls, the finish reason, the usage chunk when includeUsage, then
// [DONE]); for messages, message_start, a start, delta and stop per
// content block, message_delta with the stop reason and usage, and
// message_stop; for responses, response.created and in_progress, the
// added, delta and done events of each output item and its parts, and
// response.completed (or incomplete, or failed) with the whole
// response. Each part of the answer is one event.
func synthStream(endpoint string, body []byte, includeUsage bool) ([]byte, error) {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, fmt.Errorf("the answer is not a JSON object")
	}
	var s sse
	switch endpoint {
	case "/chat/completions":
		s.chatChunks(root, includeUsage)
	case "/completions":
		s.completionChunks(root, includeUsage)
	case "/messages":
		s.messageEvents(root)
	case "/responses":
		s.responseEvents(root)
	default:
		return nil, fmt.Errorf("no stream format for %s", endpoint)
	}
	return s.Bytes(), s.err
}

// sse is an event stream being written.
type sse struct {
	bytes.Buffer
	err error
	seq int // the next sequence number (responses)
}

// event writes one event: an optional name and data, the JSON of v.
func (s *sse) event(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return
	}
	if name != "" {
		s.WriteString("event: " + name + "\n")
	}
	s.WriteString("data: ")
	s.Write(data)
	s.WriteString("\n\n")
}

type obj = map[string]any

// raw is a JSON value as it is, or null when it does not exist.
func raw(v gjson.Result) json.RawMessage {
	if !v.Exists() {
		return json.RawMessage("null")
	}
	return json.RawMessage(v.Raw)
}

func (s *sse) chatChunks(root gjson.Result, includeUsage bool) {
	chunk := func(choices []obj) obj {
		c := obj{"id": root.Get("id").Str, "object": "chat.completion.chunk",
			"created": root.Get("created").Int(), "model": root.Get("model").Str, "choices": choices}
		if fp := root.Get("system_fingerprint"); fp.Exists() {
			c["system_fingerprint"] = raw(fp)
		}
		return c
	}
	for _, ch := range root.Get("choices").Array() {
		i := ch.Get("index").Int()
		delta := func(d obj) {
			s.event("", chunk([]obj{{"index": i, "delta": d, "logprobs": nil, "finish_reason": nil}}))
		}
		msg := ch.Get("message")
		delta(obj{"role": "assistant", "content": ""})
		var text bytes.Buffer
		if c := msg.Get("content"); c.Type == gjson.String {
			text.WriteString(c.Str)
		} else {
			for _, p := range c.Array() {
				text.WriteString(p.Get("text").Str)
			}
		}
		if text.Len() > 0 {
			delta(obj{"content": text.String()})
		}
		if r := msg.Get("refusal"); r.Type == gjson.String && r.Str != "" {
			delta(obj{"refusal": r.Str})
		}
		for k, tc := range msg.Get("tool_calls").Array() {
			delta(obj{"tool_calls": []obj{{"index": k, "id": tc.Get("id").Str, "type": "function",
				"function": obj{"name": tc.Get("function.name").Str, "arguments": tc.Get("function.arguments").Str}}}})
		}
		s.event("", chunk([]obj{{"index": i, "delta": obj{}, "logprobs": nil, "finish_reason": raw(ch.Get("finish_reason"))}}))
	}
	if includeUsage {
		c := chunk([]obj{})
		c["usage"] = raw(root.Get("usage"))
		s.event("", c)
	}
	s.WriteString("data: [DONE]\n\n")
}

func (s *sse) completionChunks(root gjson.Result, includeUsage bool) {
	chunk := func(choices []obj) obj {
		return obj{"id": root.Get("id").Str, "object": "text_completion",
			"created": root.Get("created").Int(), "model": root.Get("model").Str, "choices": choices}
	}
	for _, ch := range root.Get("choices").Array() {
		i := ch.Get("index").Int()
		s.event("", chunk([]obj{{"index": i, "text": ch.Get("text").Str, "logprobs": nil, "finish_reason": nil}}))
		s.event("", chunk([]obj{{"index": i, "text": "", "logprobs": nil, "finish_reason": raw(ch.Get("finish_reason"))}}))
	}
	if includeUsage {
		c := chunk([]obj{})
		c["usage"] = raw(root.Get("usage"))
		s.event("", c)
	}
	s.WriteString("data: [DONE]\n\n")
}

func (s *sse) messageEvents(root gjson.Result) {
	usage := root.Get("usage")
	start := obj{}
	usage.ForEach(func(k, v gjson.Result) bool {
		start[k.Str] = raw(v)
		return true
	})
	start["output_tokens"] = 0
	s.event("message_start", obj{"type": "message_start", "message": obj{
		"id": root.Get("id").Str, "type": "message", "role": "assistant", "model": root.Get("model").Str,
		"content": []obj{}, "stop_reason": nil, "stop_sequence": nil, "usage": start,
	}})
	for i, b := range root.Get("content").Array() {
		delta := func(d obj) {
			s.event("content_block_delta", obj{"type": "content_block_delta", "index": i, "delta": d})
		}
		switch b.Get("type").Str {
		case "text":
			s.event("content_block_start", obj{"type": "content_block_start", "index": i, "content_block": obj{"type": "text", "text": ""}})
			if t := b.Get("text").Str; t != "" {
				delta(obj{"type": "text_delta", "text": t})
			}
		case "tool_use":
			s.event("content_block_start", obj{"type": "content_block_start", "index": i, "content_block": obj{
				"type": "tool_use", "id": b.Get("id").Str, "name": b.Get("name").Str, "input": obj{}}})
			if in := b.Get("input"); in.Exists() {
				delta(obj{"type": "input_json_delta", "partial_json": in.Raw})
			}
		case "thinking":
			s.event("content_block_start", obj{"type": "content_block_start", "index": i, "content_block": obj{"type": "thinking", "thinking": "", "signature": ""}})
			delta(obj{"type": "thinking_delta", "thinking": b.Get("thinking").Str})
			if sig := b.Get("signature").Str; sig != "" {
				delta(obj{"type": "signature_delta", "signature": sig})
			}
		default:
			// (redacted thinking, server tool blocks): whole at its start
			s.event("content_block_start", obj{"type": "content_block_start", "index": i, "content_block": raw(b)})
		}
		s.event("content_block_stop", obj{"type": "content_block_stop", "index": i})
	}
	s.event("message_delta", obj{"type": "message_delta",
		"delta": obj{"stop_reason": raw(root.Get("stop_reason")), "stop_sequence": raw(root.Get("stop_sequence"))},
		"usage": raw(usage)})
	s.event("message_stop", obj{"type": "message_stop"})
}

// responseEvent writes one event of the Responses API: its type as the
// event name and in the data, with the next sequence number.
func (s *sse) responseEvent(typ string, fields obj) {
	fields["type"] = typ
	fields["sequence_number"] = s.seq
	s.seq++
	s.event(typ, fields)
}

func (s *sse) responseEvents(root gjson.Result) {
	// The response as it starts: in progress, no output, no usage yet.
	start := obj{}
	root.ForEach(func(k, v gjson.Result) bool {
		start[k.Str] = raw(v)
		return true
	})
	start["status"], start["output"], start["usage"] = "in_progress", []obj{}, nil
	s.responseEvent("response.created", obj{"response": start})
	s.responseEvent("response.in_progress", obj{"response": start})
	for oi, item := range root.Get("output").Array() {
		id := item.Get("id").Str
		at := func(fields obj) obj {
			fields["item_id"], fields["output_index"] = id, oi
			return fields
		}
		switch item.Get("type").Str {
		case "message":
			s.responseEvent("response.output_item.added", obj{"output_index": oi, "item": obj{
				"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []obj{}}})
			for ci, part := range item.Get("content").Array() {
				switch part.Get("type").Str {
				case "output_text":
					s.responseEvent("response.content_part.added", at(obj{"content_index": ci,
						"part": obj{"type": "output_text", "text": "", "annotations": []obj{}}}))
					text := part.Get("text").Str
					s.responseEvent("response.output_text.delta", at(obj{"content_index": ci, "delta": text, "logprobs": []obj{}}))
					s.responseEvent("response.output_text.done", at(obj{"content_index": ci, "text": text, "logprobs": []obj{}}))
				case "refusal":
					s.responseEvent("response.content_part.added", at(obj{"content_index": ci,
						"part": obj{"type": "refusal", "refusal": ""}}))
					refusal := part.Get("refusal").Str
					s.responseEvent("response.refusal.delta", at(obj{"content_index": ci, "delta": refusal}))
					s.responseEvent("response.refusal.done", at(obj{"content_index": ci, "refusal": refusal}))
				default:
					s.responseEvent("response.content_part.added", at(obj{"content_index": ci, "part": raw(part)}))
				}
				s.responseEvent("response.content_part.done", at(obj{"content_index": ci, "part": raw(part)}))
			}
		case "function_call":
			added := obj{}
			item.ForEach(func(k, v gjson.Result) bool {
				added[k.Str] = raw(v)
				return true
			})
			added["arguments"], added["status"] = "", "in_progress"
			s.responseEvent("response.output_item.added", obj{"output_index": oi, "item": added})
			args := item.Get("arguments").Str
			s.responseEvent("response.function_call_arguments.delta", at(obj{"delta": args}))
			s.responseEvent("response.function_call_arguments.done", at(obj{"arguments": args}))
		default:
			// (reasoning and other items): whole when added
			s.responseEvent("response.output_item.added", obj{"output_index": oi, "item": raw(item)})
		}
		s.responseEvent("response.output_item.done", obj{"output_index": oi, "item": raw(item)})
	}
	end := "response.completed"
	switch root.Get("status").Str {
	case "incomplete":
		end = "response.incomplete"
	case "failed":
		end = "response.failed"
	}
	s.responseEvent(end, obj{"response": raw(root)})
}
