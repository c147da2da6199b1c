package mock

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// obj is a JSON object under construction.
type obj = map[string]any

// endpoint identifies the API a request is addressed to.
type endpoint int

const (
	endpointUnknown endpoint = iota
	endpointChat
	endpointCompletions
	endpointEmbeddings
	endpointResponses
	endpointMessages
	endpointCountTokens
	endpointModels
)

// endpointFor matches the request against the supported APIs by path
// suffix, so that both /v1/chat/completions and Azure-style
// /openai/deployments/x/chat/completions are recognized.
func endpointFor(r *http.Request) endpoint {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method == http.MethodGet {
		if strings.HasSuffix(path, "/models") {
			return endpointModels
		}
		return endpointUnknown
	}
	if r.Method != http.MethodPost {
		return endpointUnknown
	}
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return endpointChat
	case strings.HasSuffix(path, "/completions"):
		return endpointCompletions
	case strings.HasSuffix(path, "/embeddings"):
		return endpointEmbeddings
	case strings.HasSuffix(path, "/responses"):
		return endpointResponses
	case strings.HasSuffix(path, "/messages"):
		return endpointMessages
	case strings.HasSuffix(path, "/messages/count_tokens"):
		return endpointCountTokens
	}
	return endpointUnknown
}

// reply holds everything needed to render one mock answer.
type reply struct {
	endpoint     endpoint
	id           string
	itemID       string // id of the output message (responses API)
	created      int64
	model        string
	words        []string  // output tokens actually emitted
	lead         string    // whitespace before the first word (a continuation's)
	truncated    bool      // output was cut short by a max tokens parameter
	refusal      bool      // the answer is a refusal (a scripted reply)
	tool         *toolCall // the answer is this tool call instead of words
	promptTokens int
	cacheRead    int      // prompt tokens read from the cache
	cacheWrite   int      // prompt tokens written to the cache (Anthropic only)
	includeUsage bool     // stream_options.include_usage
	inputs       []string // embeddings inputs, one vector each
}

// newReply prepares the answer to the request body req.
func (h *Handler) newReply(ep endpoint, req gjson.Result) (*reply, error) {
	rp := &reply{
		endpoint:     ep,
		created:      time.Now().Unix(),
		model:        h.Model,
		promptTokens: promptTokens(req),
		includeUsage: req.Get("stream_options.include_usage").Bool(),
	}
	if rp.model == "" {
		rp.model = req.Get("model").String()
	}
	if rp.model == "" {
		rp.model = "mock"
	}

	switch ep {
	case endpointChat:
		rp.id = "chatcmpl-" + randomID()
		rp.tool = newToolCall(ep, req)
		rp.useCache(h.CachedTokens, 0) // OpenAI reports no cache writes
	case endpointCompletions:
		rp.id = "cmpl-" + randomID()
	case endpointResponses:
		rp.id = "resp_" + randomID()
		rp.itemID = "msg_" + randomID()
	case endpointMessages:
		rp.id = "msg_" + randomID()
		rp.tool = newToolCall(ep, req)
		rp.useCache(h.CachedTokens, h.CacheWriteTokens)
	case endpointEmbeddings:
		input := req.Get("input")
		if input.IsArray() {
			for _, item := range input.Array() {
				rp.inputs = append(rp.inputs, item.String())
			}
		} else if input.Exists() {
			rp.inputs = []string{input.String()}
		}
		if len(rp.inputs) == 0 {
			return nil, fmt.Errorf("'input' is required")
		}
		return rp, nil
	case endpointModels, endpointCountTokens:
		return rp, nil
	}

	if rp.tool != nil {
		// a tool call ignores the output limit
		return rp, nil
	}
	text := h.Text
	if script := h.scripted(req); script != nil {
		text, rp.refusal = script.Text, script.Refusal
	}
	text, err := h.continueText(ep, req, text)
	if err != nil {
		return nil, err
	}
	rp.words = strings.Fields(text)
	if len(rp.words) > 0 {
		// a continuation may begin with the space between two words
		rp.lead = text[:len(text)-len(strings.TrimLeft(text, " \t\n"))]
	}
	if limit := maxTokens(req); limit > 0 && limit < len(rp.words) {
		rp.words = rp.words[:limit]
		rp.truncated = true
	}
	return rp, nil
}

// useCache reports read of the prompt tokens as read from the cache and
// write of them as written to it, raising the prompt size to at least
// their sum.
func (rp *reply) useCache(read, write int) {
	rp.cacheRead, rp.cacheWrite = read, write
	rp.promptTokens = max(rp.promptTokens, read+write)
}

// promptTokens estimates the prompt size as one token per 4 bytes of
// text content, and at least 1.
func promptTokens(req gjson.Result) int {
	n := 0
	for _, field := range []string{"messages", "system", "prompt", "input"} {
		n += textBytes(req.Get(field))
	}
	return max(1, (n+3)/4)
}

// textBytes counts the bytes of text in v: a string, a list, a content
// part with a text field, or a message with a content field.
func textBytes(v gjson.Result) int {
	switch {
	case v.Type == gjson.String:
		return len(v.Str)
	case v.IsArray():
		n := 0
		for _, item := range v.Array() {
			n += textBytes(item)
		}
		return n
	case v.IsObject():
		if text := v.Get("text"); text.Type == gjson.String {
			return len(text.Str)
		}
		return textBytes(v.Get("content"))
	}
	return 0
}

// maxTokens returns the smallest positive output limit of the request,
// or 0 if there is none.
func maxTokens(req gjson.Result) int {
	limit := 0
	for _, key := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
		v := req.Get(key)
		if v.Type != gjson.Number || v.Int() <= 0 {
			continue
		}
		if n := int(v.Int()); limit == 0 || n < limit {
			limit = n
		}
	}
	return limit
}

// randomID returns a random identifier suffix.
func randomID() string {
	return strings.ToLower(rand.Text())
}

// text is the full output text.
func (rp *reply) text() string {
	return rp.lead + strings.Join(rp.words, " ")
}

// token is the text of the i-th content chunk: one word, followed by a
// space unless it is the last one.
func (rp *reply) token(i int) string {
	t := rp.words[i]
	if i == 0 {
		t = rp.lead + t
	}
	if i < len(rp.words)-1 {
		return t + " "
	}
	return t
}

// completionTokens is the number of output tokens: words, or the
// pieces of a tool call's arguments.
func (rp *reply) completionTokens() int {
	if rp.tool != nil {
		return len(rp.tool.pieces)
	}
	return len(rp.words)
}

// finishReason is the reason the output ended, in the endpoint's terms.
func (rp *reply) finishReason() string {
	switch {
	case rp.endpoint == endpointMessages && rp.tool != nil:
		return "tool_use"
	case rp.tool != nil:
		return "tool_calls"
	case rp.endpoint == endpointMessages && rp.refusal:
		return "refusal"
	case rp.endpoint == endpointMessages && rp.truncated:
		return "max_tokens"
	case rp.endpoint == endpointMessages:
		return "end_turn"
	case rp.truncated:
		return "length"
	}
	return "stop"
}

// responseStatus is the status of a finished responses API answer.
func (rp *reply) responseStatus() string {
	if rp.truncated {
		return "incomplete"
	}
	return "completed"
}

// openAIUsage is the usage object of the chat and completions APIs.
func (rp *reply) openAIUsage() obj {
	return obj{
		"prompt_tokens":     rp.promptTokens,
		"completion_tokens": rp.completionTokens(),
		"total_tokens":      rp.promptTokens + rp.completionTokens(),
	}
}

// chatUsage is the usage object of the chat API, which also tells how
// many prompt tokens were read from the cache.
func (rp *reply) chatUsage() obj {
	u := rp.openAIUsage()
	u["prompt_tokens_details"] = obj{"cached_tokens": rp.cacheRead}
	return u
}

// anthropicUsage is the usage object of the messages API, where
// input_tokens leaves out the tokens read from or written to the cache.
func (rp *reply) anthropicUsage() obj {
	return obj{
		"input_tokens":                rp.promptTokens - rp.cacheRead - rp.cacheWrite,
		"cache_creation_input_tokens": rp.cacheWrite,
		"cache_read_input_tokens":     rp.cacheRead,
		"output_tokens":               rp.completionTokens(),
	}
}

// body renders the non-streamed answer.
func (rp *reply) body() []byte {
	switch rp.endpoint {
	case endpointChat:
		return marshal(rp.chatCompletion())
	case endpointCompletions:
		return marshal(rp.completion())
	case endpointEmbeddings:
		return marshal(rp.embeddings())
	case endpointResponses:
		status := rp.responseStatus()
		item := rp.outputMessage(status, []obj{outputText(rp.text())})
		return marshal(rp.response(status, []obj{item}, true))
	case endpointMessages:
		return marshal(rp.message())
	case endpointCountTokens:
		return marshal(obj{"input_tokens": rp.promptTokens})
	}
	return nil // (the models endpoint: serveModels)
}

func (rp *reply) chatCompletion() obj {
	message := obj{
		"role":    "assistant",
		"content": rp.text(),
		"refusal": nil,
	}
	if rp.refusal {
		message["content"], message["refusal"] = nil, rp.text()
	}
	if rp.tool != nil {
		message["content"] = nil
		message["tool_calls"] = []obj{{
			"id":       rp.tool.id,
			"type":     "function",
			"function": obj{"name": rp.tool.name, "arguments": rp.tool.arguments},
		}}
	}
	return obj{
		"id":      rp.id,
		"object":  "chat.completion",
		"created": rp.created,
		"model":   rp.model,
		"choices": []obj{{
			"index":         0,
			"message":       message,
			"logprobs":      nil,
			"finish_reason": rp.finishReason(),
		}},
		"usage": rp.chatUsage(),
	}
}

func (rp *reply) completion() obj {
	return obj{
		"id":      rp.id,
		"object":  "text_completion",
		"created": rp.created,
		"model":   rp.model,
		"choices": []obj{{
			"index":         0,
			"text":          rp.text(),
			"logprobs":      nil,
			"finish_reason": rp.finishReason(),
		}},
		"usage": rp.openAIUsage(),
	}
}

func (rp *reply) embeddings() obj {
	data := make([]obj, len(rp.inputs))
	for i, input := range rp.inputs {
		data[i] = obj{"object": "embedding", "index": i, "embedding": embed(input)}
	}
	return obj{
		"object": "list",
		"data":   data,
		"model":  rp.model,
		"usage":  obj{"prompt_tokens": rp.promptTokens, "total_tokens": rp.promptTokens},
	}
}

// embed derives a deterministic unit vector of 8 floats from s.
func embed(s string) []float64 {
	sum := sha256.Sum256([]byte(s))
	vec := make([]float64, 8)
	var norm float64
	for i := range vec {
		u := binary.BigEndian.Uint32(sum[i*4:])
		vec[i] = float64(u)/math.MaxUint32*2 - 1
		norm += vec[i] * vec[i]
	}
	if norm = math.Sqrt(norm); norm > 0 {
		for i := range vec {
			vec[i] /= norm
		}
	}
	return vec
}

// response is a responses API response object.
func (rp *reply) response(status string, output []obj, withUsage bool) obj {
	resp := obj{
		"id":                  rp.id,
		"object":              "response",
		"created_at":          rp.created,
		"status":              status,
		"model":               rp.model,
		"output":              output,
		"error":               nil,
		"incomplete_details":  nil,
		"instructions":        nil,
		"metadata":            obj{},
		"parallel_tool_calls": true,
		"temperature":         1,
		"tool_choice":         "auto",
		"tools":               []obj{},
		"top_p":               1,
		"usage":               nil,
	}
	if status == "incomplete" {
		resp["incomplete_details"] = obj{"reason": "max_output_tokens"}
	}
	if withUsage {
		resp["usage"] = obj{
			"input_tokens":          rp.promptTokens,
			"input_tokens_details":  obj{"cached_tokens": 0},
			"output_tokens":         rp.completionTokens(),
			"output_tokens_details": obj{"reasoning_tokens": 0},
			"total_tokens":          rp.promptTokens + rp.completionTokens(),
		}
	}
	return resp
}

// outputMessage is the assistant message item of a responses API answer.
func (rp *reply) outputMessage(status string, content []obj) obj {
	return obj{
		"type":    "message",
		"id":      rp.itemID,
		"status":  status,
		"role":    "assistant",
		"content": content,
	}
}

// outputText is an output_text content part.
func outputText(text string) obj {
	return obj{"type": "output_text", "text": text, "annotations": []obj{}}
}

// message is an Anthropic messages API response.
func (rp *reply) message() obj {
	block := obj{"type": "text", "text": rp.text()}
	if rp.tool != nil {
		block = rp.toolUseBlock(json.RawMessage(rp.tool.arguments))
	}
	return obj{
		"id":            rp.id,
		"type":          "message",
		"role":          "assistant",
		"model":         rp.model,
		"content":       []obj{block},
		"stop_reason":   rp.finishReason(),
		"stop_sequence": nil,
		"usage":         rp.anthropicUsage(),
	}
}

// toolUseBlock is the tool_use content block of an Anthropic answer.
func (rp *reply) toolUseBlock(input any) obj {
	return obj{"type": "tool_use", "id": rp.tool.id, "name": rp.tool.name, "input": input}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name string // the event field; empty for OpenAI chat and completions streams
	data []byte
}

// bytes renders the event on the wire.
func (ev sseEvent) bytes() []byte {
	var buf bytes.Buffer
	if ev.name != "" {
		buf.WriteString("event: " + ev.name + "\n")
	}
	buf.WriteString("data: ")
	buf.Write(ev.data)
	buf.WriteString("\n\n")
	return buf.Bytes()
}

// malformedData is the truncated JSON sent by the malformed fault.
const malformedData = `{"choices":[{"delta":`

// stream is a streamed answer split into server-sent events.
type stream struct {
	head      []sseEvent // sent before the first content chunk
	content   []sseEvent // one event per output token
	tail      []sseEvent // sent after the last content chunk
	done      []sseEvent // terminator, left out by the no_done fault
	malformed sseEvent   // invalid event injected by the malformed fault
}

// errorEvent is the event of the error_event fault: an overload error
// in the endpoint's shape.
func (s *stream) errorEvent(ep endpoint) sseEvent {
	const msg = "llm_mock: injected error event"
	if ep == endpointMessages {
		return sseEvent{name: "error", data: marshal(obj{"type": "error", "error": obj{"type": "overloaded_error", "message": msg}})}
	}
	return sseEvent{data: marshal(obj{"error": obj{"message": msg, "type": "server_error", "code": "server_error"}})}
}

// stream renders the streamed answer.
func (rp *reply) stream() *stream {
	switch rp.endpoint {
	case endpointChat:
		return rp.chatStream()
	case endpointCompletions:
		return rp.completionStream()
	case endpointResponses:
		return rp.responseStream()
	}
	return rp.messageStream()
}

func (rp *reply) chatStream() *stream {
	chunk := func(delta obj, finishReason any) sseEvent {
		return sseEvent{data: marshal(obj{
			"id":      rp.id,
			"object":  "chat.completion.chunk",
			"created": rp.created,
			"model":   rp.model,
			"choices": []obj{{
				"index":         0,
				"delta":         delta,
				"logprobs":      nil,
				"finish_reason": finishReason,
			}},
		})}
	}

	s := &stream{malformed: sseEvent{data: []byte(malformedData)}}
	if rp.tool != nil {
		// the first chunk names the tool, the others carry the arguments
		s.head = []sseEvent{chunk(obj{
			"role":    "assistant",
			"content": nil,
			"refusal": nil,
			"tool_calls": []obj{{
				"index":    0,
				"id":       rp.tool.id,
				"type":     "function",
				"function": obj{"name": rp.tool.name, "arguments": ""},
			}},
		}, nil)}
		for _, piece := range rp.tool.pieces {
			s.content = append(s.content, chunk(obj{"tool_calls": []obj{{
				"index":    0,
				"function": obj{"arguments": piece},
			}}}, nil))
		}
	} else {
		// a refusal comes in delta.refusal, as message.refusal does whole
		field := "content"
		s.head = []sseEvent{chunk(obj{"role": "assistant", "content": ""}, nil)}
		if rp.refusal {
			field = "refusal"
			s.head = []sseEvent{chunk(obj{"role": "assistant", "content": nil, "refusal": ""}, nil)}
		}
		for i := range rp.words {
			s.content = append(s.content, chunk(obj{field: rp.token(i)}, nil))
		}
	}
	s.tail = []sseEvent{chunk(obj{}, rp.finishReason())}
	if rp.includeUsage {
		s.tail = append(s.tail, sseEvent{data: marshal(obj{
			"id":      rp.id,
			"object":  "chat.completion.chunk",
			"created": rp.created,
			"model":   rp.model,
			"choices": []obj{},
			"usage":   rp.chatUsage(),
		})})
	}
	s.done = []sseEvent{{data: []byte("[DONE]")}}
	return s
}

func (rp *reply) completionStream() *stream {
	chunk := func(text string, finishReason any) obj {
		return obj{
			"id":      rp.id,
			"object":  "text_completion",
			"created": rp.created,
			"model":   rp.model,
			"choices": []obj{{
				"index":         0,
				"text":          text,
				"logprobs":      nil,
				"finish_reason": finishReason,
			}},
		}
	}

	s := &stream{malformed: sseEvent{data: []byte(malformedData)}}
	for i := range rp.words {
		s.content = append(s.content, sseEvent{data: marshal(chunk(rp.token(i), nil))})
	}
	s.tail = []sseEvent{{data: marshal(chunk("", rp.finishReason()))}}
	if rp.includeUsage {
		usage := chunk("", nil)
		usage["choices"] = []obj{}
		usage["usage"] = rp.openAIUsage()
		s.tail = append(s.tail, sseEvent{data: marshal(usage)})
	}
	s.done = []sseEvent{{data: []byte("[DONE]")}}
	return s
}

func (rp *reply) responseStream() *stream {
	seq := 0
	event := func(typ string, fields obj) sseEvent {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		return sseEvent{name: typ, data: marshal(fields)}
	}
	text := rp.text()
	status := rp.responseStatus()
	item := rp.outputMessage(status, []obj{outputText(text)})

	s := &stream{malformed: sseEvent{name: "response.output_text.delta", data: []byte(malformedData)}}
	s.head = []sseEvent{
		event("response.created", obj{
			"response": rp.response("in_progress", []obj{}, false),
		}),
		event("response.output_item.added", obj{
			"output_index": 0,
			"item":         rp.outputMessage("in_progress", []obj{}),
		}),
		event("response.content_part.added", obj{
			"item_id":       rp.itemID,
			"output_index":  0,
			"content_index": 0,
			"part":          outputText(""),
		}),
	}
	for i := range rp.words {
		s.content = append(s.content, event("response.output_text.delta", obj{
			"item_id":       rp.itemID,
			"output_index":  0,
			"content_index": 0,
			"delta":         rp.token(i),
			"logprobs":      []obj{},
		}))
	}
	s.tail = []sseEvent{
		event("response.output_text.done", obj{
			"item_id":       rp.itemID,
			"output_index":  0,
			"content_index": 0,
			"text":          text,
			"logprobs":      []obj{},
		}),
		event("response.content_part.done", obj{
			"item_id":       rp.itemID,
			"output_index":  0,
			"content_index": 0,
			"part":          outputText(text),
		}),
		event("response.output_item.done", obj{
			"output_index": 0,
			"item":         item,
		}),
	}
	s.done = []sseEvent{
		event("response."+status, obj{
			"response": rp.response(status, []obj{item}, true),
		}),
	}
	return s
}

func (rp *reply) messageStream() *stream {
	event := func(typ string, fields obj) sseEvent {
		fields["type"] = typ
		return sseEvent{name: typ, data: marshal(fields)}
	}

	// message_start reports the input and a first output token,
	// message_delta the whole usage
	startUsage := rp.anthropicUsage()
	startUsage["output_tokens"] = 1
	block := obj{"type": "text", "text": ""}
	if rp.tool != nil {
		block = rp.toolUseBlock(obj{})
	}

	s := &stream{malformed: sseEvent{name: "content_block_delta", data: []byte(malformedData)}}
	s.head = []sseEvent{
		event("message_start", obj{"message": obj{
			"id":            rp.id,
			"type":          "message",
			"role":          "assistant",
			"model":         rp.model,
			"content":       []obj{},
			"stop_reason":   nil,
			"stop_sequence": nil,
			"usage":         startUsage,
		}}),
		event("content_block_start", obj{
			"index":         0,
			"content_block": block,
		}),
		event("ping", obj{}),
	}
	if rp.tool != nil {
		for _, piece := range rp.tool.pieces {
			s.content = append(s.content, event("content_block_delta", obj{
				"index": 0,
				"delta": obj{"type": "input_json_delta", "partial_json": piece},
			}))
		}
	} else {
		for i := range rp.words {
			s.content = append(s.content, event("content_block_delta", obj{
				"index": 0,
				"delta": obj{"type": "text_delta", "text": rp.token(i)},
			}))
		}
	}
	s.tail = []sseEvent{
		event("content_block_stop", obj{"index": 0}),
		event("message_delta", obj{
			"delta": obj{"stop_reason": rp.finishReason(), "stop_sequence": nil},
			"usage": rp.anthropicUsage(),
		}),
	}
	s.done = []sseEvent{event("message_stop", obj{})}
	return s
}

// errorBody renders an error in the shape of the endpoint's API:
// Anthropic's for the messages API, OpenAI's for everything else.
func errorBody(ep endpoint, status int, msg string) []byte {
	typ := errorType(status)
	if ep == endpointMessages || ep == endpointCountTokens {
		return marshal(obj{
			"type":  "error",
			"error": obj{"type": typ, "message": msg},
		})
	}
	code := strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
	if code == "" {
		code = fmt.Sprintf("status_%d", status)
	}
	return marshal(obj{
		"error": obj{"message": msg, "type": typ, "param": nil, "code": code},
	})
}

// errorType names the error class of a status code, using the types
// Anthropic documents (OpenAI's are similar but less consistent).
func errorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// marshal encodes v as JSON without escaping HTML characters.
// Values built in this package always encode.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("llm_mock: encoding response: %v", err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
