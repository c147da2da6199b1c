package mock

import (
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// What the mock does with a conversation that ends with an assistant
// turn (a prefill: the start of the answer, to be continued).
const (
	// PrefillContinue answers with the rest of the mock's text when the
	// prefill is its beginning, and with the whole text otherwise.
	PrefillContinue = "continue"
	// PrefillIgnore answers with the whole text, as a model that
	// restarts the answer would.
	PrefillIgnore = "ignore"
	// PrefillRefuse answers 400, as a model that does not support
	// prefill does.
	PrefillRefuse = "refuse"
)

// prefill returns the text of the final assistant turn of a chat or
// messages request, and whether there is one.
func prefill(ep endpoint, req gjson.Result) (string, bool) {
	if ep != endpointChat && ep != endpointMessages {
		return "", false
	}
	msgs := req.Get("messages").Array()
	if len(msgs) == 0 || msgs[len(msgs)-1].Get("role").String() != "assistant" {
		return "", false
	}
	content := msgs[len(msgs)-1].Get("content")
	if content.Type == gjson.String {
		return content.Str, true
	}
	var b strings.Builder
	for _, part := range content.Array() {
		if part.Get("type").String() == "text" {
			b.WriteString(part.Get("text").String())
		}
	}
	return b.String(), true
}

// continueText applies the prefill policy to text, the answer the mock
// would give (its text, or a scripted reply's): it returns the text to
// answer with, or an error for a refused prefill.
func (h *Handler) continueText(ep endpoint, req gjson.Result, text string) (string, error) {
	pre, ok := prefill(ep, req)
	if !ok {
		return text, nil
	}
	switch h.Prefill {
	case PrefillRefuse:
		return "", fmt.Errorf("this model does not support assistant message prefill")
	case PrefillIgnore:
		return text, nil
	}
	if pre != "" && strings.HasPrefix(text, pre) {
		return text[len(pre):], nil
	}
	return text, nil
}
