package mock

import (
	"strings"

	"github.com/tidwall/gjson"
)

// Reply is an answer scripted for the requests whose text contains
// Match: the text of every message, system prompt, prompt and input,
// one part per line. The first matching reply of the list answers.
type Reply struct {
	// The text to look for in the request. Required.
	Match string `json:"match"`

	// The answer's text: each whitespace-separated word is one token.
	Text string `json:"text"`

	// Answer as a refusal: a chat completion's message.refusal (its
	// content null; delta.refusal in a stream), a message's stop_reason
	// refusal; other APIs send the text as usual.
	Refusal bool `json:"refusal,omitempty"`
}

// scripted returns the reply scripted for a request, or nil.
func (h *Handler) scripted(req gjson.Result) *Reply {
	if len(h.Replies) == 0 {
		return nil
	}
	var b strings.Builder
	for _, field := range []string{"messages", "system", "prompt", "input", "instructions"} {
		requestText(&b, req.Get(field))
	}
	text := b.String()
	for i := range h.Replies {
		if strings.Contains(text, h.Replies[i].Match) {
			return &h.Replies[i]
		}
	}
	return nil
}

// requestText writes the text in v: a string, a list, a content part
// with a text field, or a message with a content field.
func requestText(b *strings.Builder, v gjson.Result) {
	switch {
	case v.Type == gjson.String:
		b.WriteString(v.Str)
		b.WriteByte('\n')
	case v.IsArray():
		for _, item := range v.Array() {
			requestText(b, item)
		}
	case v.IsObject():
		if text := v.Get("text"); text.Type == gjson.String {
			b.WriteString(text.Str)
			b.WriteByte('\n')
			return
		}
		requestText(b, v.Get("content"))
	}
}
