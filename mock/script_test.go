package mock

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"
)

func TestScriptedReplies(t *testing.T) {
	h := provision(t, &Handler{Text: "Default answer.", Replies: []Reply{
		{Match: "prove", Text: "Hmm."},
		{Match: "forbidden", Text: "I cannot help with that.", Refusal: true},
	}})
	ask := func(path, prompt string, stream bool) string {
		body := `{"model":"m","max_tokens":50,"stream":` + map[bool]string{true: "true", false: "false"}[stream] +
			`,"messages":[{"role":"user","content":"` + prompt + `"}]}`
		return serve(t, h, newRequest("POST", path, body, "anthropic-version", "2023-06-01")).Body.String()
	}

	if got := gjson.Get(ask("/v1/chat/completions", "please prove it", false), "choices.0.message.content").Str; got != "Hmm." {
		t.Errorf("reply: %q", got)
	}
	if got := gjson.Get(ask("/v1/chat/completions", "hello", false), "choices.0.message.content").Str; got != "Default answer." {
		t.Errorf("no match: %q", got)
	}

	// a refusal: message.refusal with content null, stop_reason refusal
	chat := ask("/v1/chat/completions", "something forbidden", false)
	if msg := gjson.Get(chat, "choices.0.message"); msg.Get("refusal").Str != "I cannot help with that." || msg.Get("content").Type != gjson.Null {
		t.Errorf("chat refusal: %s", chat)
	}
	if msgs := ask("/v1/messages", "something forbidden", false); gjson.Get(msgs, "stop_reason").Str != "refusal" {
		t.Errorf("messages refusal: %s", msgs)
	}
	// in a stream, delta.refusal, never content
	stream := ask("/v1/chat/completions", "something forbidden", true)
	var refusal strings.Builder
	for _, d := range sseData(t, stream) {
		delta := gjson.Get(d, "choices.0.delta")
		refusal.WriteString(delta.Get("refusal").Str)
		if delta.Get("content").Str != "" {
			t.Errorf("a refusal stream sent content: %s", d)
		}
	}
	if refusal.String() != "I cannot help with that." {
		t.Errorf("stream refusal %q:\n%s", refusal.String(), stream)
	}

	// as the SDK reads it
	client := openAIClient(startServer(t, h))
	acc := openai.ChatCompletionAccumulator{}
	s := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "m",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("something forbidden")},
	})
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Refusal != "I cannot help with that." {
		t.Errorf("the SDK's accumulated answer: %+v", acc.Choices)
	}
}
