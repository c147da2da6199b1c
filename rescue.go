package llmroute

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/tokens"
	"github.com/caddy-llm-route/llmroute/translate"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// Why a stream that reached the client fails in the splice's eyes.
var (
	errMidStreamError = errors.New("upstream sent an error event mid-stream")
	errRestarted      = errors.New("the continuation restarted the answer instead of continuing it")
	errNotStream      = errors.New("the continuation is not an event stream")
)

// kindRestarted is the kind of a continuation's failure that restarted
// the answer: the continuation method's fault (a prefill the API
// ignores), not the pair's, so it does not count toward a cooldown.
const kindRestarted = "restarted"

// failureKind is the kind of the failure the splice stopped the attempt
// under way for: kindRestarted for a restart, else "" (the pair's).
func (sp *splice) failureKind() string {
	if errors.Is(sp.err, errRestarted) {
		return kindRestarted
	}
	return ""
}

// restartProbe is how much of the text already sent a continuation's
// opening is compared with, to tell a restart from a continuation.
const restartProbe = 16

// continueInstruction is the user turn the `instruction` continuation
// method adds after the text already sent.
const continueInstruction = "Your previous answer was cut off. Continue it exactly where it stopped, without repeating any of it and without any preamble."

// splice is the client's side of a text stream of chat completions or
// messages: it stands between the attempts' writers (which give it whole
// events in the client's format, translated if need be) and the client.
// It follows what the client has been sent (the text, the ids, whether a
// finish or the terminator went out, tool calls) so that
//
//   - a stream that ends after its finish but without its terminator is
//     finished for the client (complete);
//   - with rescue on, a stream that breaks can be continued by the next
//     candidate (mid-stream rescue): the continuation's events are
//     spliced in as if the first call had sent them: the first call's
//     id, model and created, no second role or message_start, content
//     block indices that go on from the client's, and usage that sums
//     every call. Its opening is held until it shows that it continues
//     the text rather than restarting it.
//
// With rescue on, an error event mid-stream is a break like any other,
// and is not passed on.
type splice struct {
	w      http.ResponseWriter
	api    string // the client's API (translate.OpenAI or translate.Anthropic)
	rescue bool

	buf []byte // the start of an event not ended yet

	// What the client has been sent.
	sent             strings.Builder // the answer's text
	id, model        string
	created          string         // raw JSON
	finished         bool           // a finish reason went out
	done             bool           // the terminator went out
	tools            bool           // a tool call, a non-text block or several choices went out
	next, open       int            // messages: the next block index, the open text block (-1: none)
	prefilled        bool           // the request already ends with an assistant turn (once read)
	request          []byte         // the request's body, until read (readRequest)
	prior            Usage          // usage of the calls before the attempt under way
	carried          *attemptWriter // the last call added to prior
	err              error          // why the splice stopped the attempt under way
	wroteHeader      bool
	continuations    int // continuations begun
	checkedRestart   bool
	deltas           int64 // content and tool call deltas of the attempt under way
	sentDeltas       int64 // text deltas the client got, of every call
	heldDeltas       int64 // text deltas of held events
	trim             string
	base             string      // the text sent when the continuation began, trimmed
	blocks           map[int]int // messages: the continuation's block index → the client's
	held             []byte      // a continuation's events held until checked
	heldText         strings.Builder
	mergedOpenedText bool // messages: the continuation's first text block merged into the open one
	kept             keptState
	notStream        bool   // the attempt under way answered with something else than a stream
	plain            bool   // the first answer is no event stream: passed on as it comes
	withheld         []byte // the last error event held back for a continuation: the client's if none finishes the answer
}

// keptState is what a continuation's held events may change of the
// client's view, as it was when the continuation began: restored when
// the held events are dropped.
type keptState struct {
	next, open            int
	finished, done, tools bool
}

// newSplice returns the splice of a text stream request, or nil when the
// request is not one (not a stream, or another endpoint).
func newSplice(w http.ResponseWriter, req *strategies.Request, rescue bool) *splice {
	api := translate.ClientAPI(req.Endpoint)
	if !req.Stream || api == "" {
		return nil
	}
	return &splice{w: w, api: api, rescue: rescue, open: -1, checkedRestart: true, request: req.Body}
}

// readRequest reads, once, what the request says of continuing its
// stream: whether it ends with an assistant turn, and whether it asks
// for several choices. Only a stream that breaks needs to know, so it is
// read then, not before every stream's first byte.
func (sp *splice) readRequest() {
	body := sp.request
	if body == nil {
		return
	}
	sp.request = nil
	// Read in place: the messages are most of a body, which gjson would
	// copy.
	jsonscan.EachMember(body, 0, func(m jsonscan.Member) bool {
		switch {
		case m.Is("messages"):
			sp.prefilled = lastRole(m.Value) == "assistant"
		case m.Is("n"):
			if gjson.ParseBytes(m.Value).Int() != 1 {
				sp.tools = true // several choices cannot be continued as one
			}
		}
		return true
	})
}

// lastRole returns the role of the last of messages (as gjson's
// Array reads them: an object is one message), or "".
func lastRole(messages []byte) string {
	last := messages
	if len(messages) > 0 && messages[0] == '[' {
		last = nil
		jsonscan.EachElement(messages, func(v []byte) bool { last = v; return true })
	}
	role, _ := jsonscan.String(jsonscan.Lookup(last, "role"))
	return role
}

// spliceOf returns w's splice, or nil. A hedged call's gate (hedge.go)
// leads to the splice once the call won its race.
func spliceOf(w http.ResponseWriter) *splice {
	switch w := w.(type) {
	case *splice:
		return w
	case *hedgeGate:
		if w.won {
			return spliceOf(w.w)
		}
	}
	return nil
}

// Header returns the client's header map.
func (sp *splice) Header() http.Header { return sp.w.Header() }

// WriteHeader writes the first attempt's status; a continuation's goes
// nowhere. An answer that is no event stream (a whole completion to a
// stream request) has nothing to splice: it goes on as it comes.
func (sp *splice) WriteHeader(status int) {
	if sp.wroteHeader {
		return
	}
	sp.wroteHeader = true
	sp.plain = !isStream(sp.w.Header().Get("Content-Type"))
	sp.w.WriteHeader(status)
}

// FlushError flushes what went to the client.
func (sp *splice) FlushError() error { return http.NewResponseController(sp.w).Flush() }

// Unwrap returns the client's writer, for http.ResponseController.
func (sp *splice) Unwrap() http.ResponseWriter { return sp.w }

// Write takes whole events (and the start of one, kept until it ends),
// and passes on to the client what it should get of them.
func (sp *splice) Write(p []byte) (int, error) {
	if !sp.wroteHeader {
		sp.WriteHeader(http.StatusOK)
	}
	if sp.notStream {
		sp.err = errNotStream
		return 0, errNotStream
	}
	if sp.plain {
		return sp.w.Write(p)
	}
	// The events are read where they are: in p, unless the start of one
	// waits in buf. While each goes on as it came, in[:done] is what the
	// client gets; from the first that does not, a copy (out).
	in := p
	if len(sp.buf) > 0 {
		sp.buf = append(sp.buf, p...)
		in = sp.buf
	}
	var out []byte
	done, copied := 0, false
	for {
		end := eventEnd(in[done:])
		if end < 0 {
			break
		}
		ev := in[done : done+end]
		res, err := sp.event(ev)
		if err != nil {
			if !copied {
				out = in[:done]
			}
			sp.buf = nil
			sp.err = err
			sp.write(out)
			return 0, err
		}
		if !copied && !same(res, ev) {
			out, copied = append(out, in[:done]...), true
		}
		if copied {
			out = append(out, res...)
		}
		done += end
	}
	if !copied {
		out = in[:done]
	}
	err := sp.write(out)
	sp.buf = append(sp.buf[:0], in[done:]...)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// same reports whether res is ev itself: an event passed on as it came.
func same(res, ev []byte) bool {
	return len(res) == len(ev) && (len(ev) == 0 || &res[0] == &ev[0])
}

func (sp *splice) write(out []byte) error {
	if len(out) == 0 {
		return nil
	}
	_, err := sp.w.Write(out)
	return err
}

// eventEnd returns the end of the first whole event in b (after the
// blank line that ends it), or -1.
func eventEnd(b []byte) int {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		line := bytes.TrimRight(b[i:i+j], "\r")
		i += j + 1
		if len(line) == 0 {
			return i
		}
	}
	return -1
}

// event returns what the client gets of one event. Its data is read in
// place (what is kept of it is cloned), and not checked again: the
// attempt's writer passes on only data lines that are valid JSON.
func (sp *splice) event(ev []byte) ([]byte, error) {
	var name, data []byte
	for line := range bytes.Lines(ev) {
		line = bytes.TrimRight(line, "\r\n")
		if v, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			name = bytes.TrimSpace(v)
		} else if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(v)
		}
	}
	switch {
	case len(data) == 0:
		return sp.pass(ev, "", false)
	case string(data) == "[DONE]":
		sp.done = true
		return sp.pass(ev, "", true)
	}
	f := readEvent(data)
	if f.isError() {
		if sp.rescue && !sp.done && !sp.finished {
			sp.withheld = bytes.Clone(ev)
			return nil, errMidStreamError
		}
		return ev, nil
	}
	if sp.api == translate.Anthropic {
		return sp.messagesEvent(name, ev, inPlace(data))
	}
	return sp.chunk(ev, inPlace(data), &f)
}

// chunk handles a chat completion chunk (j, with its members f).
func (sp *splice) chunk(ev []byte, j gjson.Result, f *eventFields) ([]byte, error) {
	if sp.id == "" {
		sp.id, sp.model, sp.created = strings.Clone(f.id.Str), strings.Clone(f.model.Str), strings.Clone(f.created.Raw)
	}
	ch := f.choices.Get("0")
	delta := ch.Get("delta")
	call := delta.Get("tool_calls").Exists() || delta.Get("function_call").Exists()
	if call || f.choices.Get("1").Exists() {
		sp.tools = true
	}
	finish := ch.Get("finish_reason").Type == gjson.String
	if sp.continuations == 0 {
		sp.finished = sp.finished || finish
	} // (a continuation's, once it is passed on)
	text := delta.Get("content").Str
	if text != "" || call {
		sp.deltas++
	}
	if sp.continuations == 0 {
		sp.sendText(text)
		return ev, nil
	}
	data := []byte(j.Raw)
	set := func(path string, v any) {
		if out, err := sjson.SetBytes(data, path, v); err == nil {
			data = out
		}
	}
	if sp.id != "" {
		set("id", sp.id)
		set("model", sp.model)
	}
	if sp.created != "" {
		if out, err := sjson.SetRawBytes(data, "created", []byte(sp.created)); err == nil {
			data = out
		}
	}
	if delta.Get("role").Exists() {
		if out, err := sjson.DeleteBytes(data, "choices.0.delta.role"); err == nil {
			data = out
		}
	}
	if text != "" {
		if t := sp.cut(text); t != text {
			text = t
			set("choices.0.delta.content", t)
		}
	}
	u := f.usage
	if u.IsObject() {
		p := u.Get("prompt_tokens").Int() + sp.prior.PromptTokens
		c := u.Get("completion_tokens").Int() + sp.prior.CompletionTokens
		set("usage.prompt_tokens", p)
		set("usage.completion_tokens", c)
		set("usage.total_tokens", p+c)
		if cr := u.Get("prompt_tokens_details.cached_tokens"); cr.Exists() {
			set("usage.prompt_tokens_details.cached_tokens", cr.Int()+sp.prior.CacheReadTokens)
		}
	}
	if text == "" && !finish && !u.IsObject() && !sp.tools && ch.Exists() {
		return nil, nil // the continuation's opening (role) chunk
	}
	out := append(append([]byte("data: "), data...), "\n\n"...)
	return sp.pass(out, text, finish)
}

// messagesEvent handles a messages stream event (j, named name).
func (sp *splice) messagesEvent(name []byte, ev []byte, j gjson.Result) ([]byte, error) {
	typ := j.Get("type").Str
	cont := sp.continuations > 0
	var data []byte // a continuation's event, rewritten
	if cont {
		data = []byte(j.Raw)
	}
	set := func(path string, v any) {
		if out, err := sjson.SetBytes(data, path, v); err == nil {
			data = out
		}
	}
	// index maps a block index of the attempt to the client's.
	index := func() int {
		i := int(j.Get("index").Int())
		if !cont {
			return i
		}
		ci, ok := sp.blocks[i]
		if !ok {
			ci = sp.next
			sp.blocks[i] = ci
			sp.next++
		}
		set("index", ci)
		return ci
	}
	text, finish := "", false
	switch typ {
	case "message_start":
		if cont {
			return nil, nil
		}
		sp.id, sp.model = strings.Clone(j.Get("message.id").Str), strings.Clone(j.Get("message.model").Str)
	case "content_block_start":
		kind := j.Get("content_block.type").Str
		if kind != "text" {
			sp.tools = true
		}
		if cont && kind == "text" && sp.open >= 0 && !sp.mergedOpenedText {
			// The continuation's text goes on in the open text block.
			sp.mergedOpenedText = true
			sp.blocks[int(j.Get("index").Int())] = sp.open
			return nil, nil
		}
		i := index()
		sp.next = max(sp.next, i+1)
		if kind == "text" {
			sp.open = i
		}
	case "content_block_delta":
		i := index()
		_ = i
		if j.Get("delta.type").Str != "text_delta" {
			sp.tools = true
			sp.deltas++ // (a tool's input, or thinking)
			break
		}
		text = j.Get("delta.text").Str
		if text != "" {
			sp.deltas++
		}
		if !cont {
			sp.sendText(text)
			return ev, nil
		}
		if t := sp.cut(text); t != text {
			text = t
			set("delta.text", t)
		}
	case "content_block_stop":
		if i := index(); i == sp.open {
			sp.open = -1
		}
	case "message_delta":
		finish = j.Get("delta.stop_reason").Type == gjson.String
		if !cont {
			sp.finished = sp.finished || finish
		}
		if cont {
			u := j.Get("usage")
			set("usage.output_tokens", u.Get("output_tokens").Int()+sp.prior.CompletionTokens)
			if in := u.Get("input_tokens"); in.Exists() {
				set("usage.input_tokens", in.Int()+sp.prior.PromptTokens-sp.prior.CacheReadTokens-sp.prior.CacheWriteTokens)
			}
			if v := u.Get("cache_read_input_tokens"); v.Exists() {
				set("usage.cache_read_input_tokens", v.Int()+sp.prior.CacheReadTokens)
			}
			if v := u.Get("cache_creation_input_tokens"); v.Exists() {
				set("usage.cache_creation_input_tokens", v.Int()+sp.prior.CacheWriteTokens)
			}
		}
	case "message_stop":
		sp.done = true
		finish = true
	}
	if !cont {
		return ev, nil
	}
	out := append([]byte("event: "), name...)
	if len(name) == 0 {
		out = append(out, typ...)
	}
	out = append(append(append(out, "\ndata: "...), data...), "\n\n"...)
	return sp.pass(out, text, finish)
}

// cut drops from a continuation's first text the whitespace that was
// trimmed off the end of the prefill (the client has it already).
func (sp *splice) cut(text string) string {
	if sp.trim == "" {
		return text
	}
	k := 0
	for k < len(text) && k < len(sp.trim) && strings.IndexByte(" \t\r\n", text[k]) >= 0 {
		k++
	}
	sp.trim = ""
	return text[k:]
}

// pass returns an event of a continuation for the client, holding it
// while the continuation's opening is checked; text is the event's
// text and end tells whether it ends the answer. The first attempt's
// events pass as they are.
func (sp *splice) pass(ev []byte, text string, end bool) ([]byte, error) {
	if sp.checkedRestart {
		if sp.continuations > 0 {
			sp.sendText(text)
			sp.finished = sp.finished || end
		}
		return ev, nil
	}
	sp.held = append(sp.held, ev...)
	sp.heldText.WriteString(text)
	if text != "" {
		sp.heldDeltas++
	}
	opening := strings.TrimLeft(sp.heldText.String(), " \t\r\n")
	need := min(len(sp.base), restartProbe)
	if len(opening) < need && !end {
		return nil, nil
	}
	if n := min(need, len(opening)); n > 0 && strings.HasPrefix(sp.base, opening[:n]) {
		return nil, errRestarted
	}
	sp.checkedRestart = true
	sp.finished = sp.finished || end
	sp.sent.WriteString(sp.heldText.String())
	sp.sentDeltas += sp.heldDeltas
	out := sp.held
	sp.held, sp.heldDeltas = nil, 0
	sp.heldText.Reset()
	return out, nil
}

// sendText notes text that goes to the client.
func (sp *splice) sendText(text string) {
	if text != "" {
		sp.sent.WriteString(text)
		sp.sentDeltas++
	}
}

// outputLeft returns a continuation's output caps: each cap field the
// body sent to c sets (clamp, the model's max_output clamp, over the
// strategy's, the target's and the client's values, in rewriteBody's
// order) lowered by the output the client has been sent already, so
// that the spliced answer is no longer than the client allowed. The
// output sent is the larger of the text deltas and the gateway's
// estimate of their text; a continuation is asked for one token at
// least.
func (sp *splice) outputLeft(req *strategies.Request, p *plan, c *strategies.Candidate, clamp map[string]json.RawMessage) map[string]json.RawMessage {
	used := max(sp.sentDeltas, int64(tokens.Estimate(sp.sent.String())))
	if used == 0 {
		return clamp
	}
	var out map[string]json.RawMessage
	for _, field := range outputCapFields {
		n, ok := sentField(req, p, c, field)
		if raw, set := clamp[field]; set {
			n, ok = gjson.ParseBytes(raw).Int(), true
		}
		if !ok {
			continue
		}
		if out == nil {
			out = maps.Clone(clamp)
			if out == nil {
				out = make(map[string]json.RawMessage, 1)
			}
		}
		out[field] = json.RawMessage(strconv.FormatInt(max(n-used, 1), 10))
	}
	if out == nil {
		return clamp
	}
	return out
}

// broken is told that the attempt under way failed after its first
// byte: it drops the events it held (which the client never saw), and
// reports whether another candidate can continue the stream.
func (sp *splice) broken() bool {
	if sp == nil {
		return false
	}
	if !sp.checkedRestart {
		k := sp.kept
		sp.next, sp.open, sp.finished, sp.done, sp.tools = k.next, k.open, k.finished, k.done, k.tools
		sp.held, sp.heldDeltas = nil, 0
		sp.heldText.Reset()
		sp.checkedRestart = true
	}
	if !sp.rescue || !sp.wroteHeader || sp.plain || sp.tools || sp.done || sp.finished {
		return false
	}
	sp.readRequest()
	return !sp.tools && !sp.prefilled
}

// committing is told that an attempt commits its answer: a
// continuation must be an event stream.
func (sp *splice) committing(aw *attemptWriter) {
	if sp != nil && sp.continuations > 0 {
		sp.notStream = !aw.stream
	}
}

// sendWithheld ends the client's stream with the error event an
// attempt ended with, held back for a continuation that did not finish
// the answer.
func (sp *splice) sendWithheld() {
	if sp == nil || sp.withheld == nil {
		return
	}
	_, _ = sp.w.Write(sp.withheld)
	_ = http.NewResponseController(sp.w).Flush()
}

// rescuing reports whether the attempt under way continues a broken
// stream.
func (sp *splice) rescuing() bool { return sp != nil && sp.continuations > 0 }

// carry adds a call that reached the stream (the one that broke, or a
// continuation that failed), its usage charged as cutShort says, to the
// usage of the calls before the next, and gets ready for a
// continuation.
func (sp *splice) carry(aw *attemptWriter) {
	if aw != nil {
		sp.prior = sp.prior.add(aw.usage)
	}
	sp.carried = aw
	sp.continuations++
	sp.err = nil
	sp.buf, sp.held, sp.deltas, sp.heldDeltas = nil, nil, 0, 0
	sp.heldText.Reset()
	text := sp.sent.String()
	sp.base = strings.TrimSpace(text)
	sp.trim = text[len(strings.TrimRight(text, " \t\r\n")):]
	sp.checkedRestart = sp.base == ""
	sp.blocks = make(map[int]int)
	sp.mergedOpenedText = false
	sp.kept = keptState{next: sp.next, open: sp.open, finished: sp.finished, done: sp.done, tools: sp.tools}
}

// total is the usage of every call: the calls before the last and the
// last one's.
func (sp *splice) total(last Usage) Usage { return sp.prior.add(last) }

// cutShort is the usage of a call whose answer reached the client and
// did not end as it should (it broke, or the client went away): what
// the call reported, and at least the gateway's estimate of the prompt
// and, for a stream the splice follows, a token per delta the client
// got. The provider bills what it sent: a call cut short before it
// reported its usage must not go free against the limits, in the
// metrics or in the cost.
func cutShort(u Usage, sp *splice, req *strategies.Request) Usage {
	if u.PromptTokens == 0 {
		// On a view of its own: req may be read by a hedge's other
		// call meanwhile.
		v := strategies.Request{Endpoint: req.Endpoint, Body: req.Body}
		v.ReadPrompt()
		u.PromptTokens = int64(v.PromptTokens)
	}
	if sp != nil {
		u.CompletionTokens = max(u.CompletionTokens, sp.deltas)
	}
	return u
}

// complete ends a stream whose finish went out but whose terminator did
// not come: the client gets the terminator. When the attempt's answer
// (aw) is translated, the client gets first what the translation makes
// of the upstream's terminator (an OpenAI client's usage chunk, if it
// asked for usage); if that fails, nothing more is sent and the error
// says the stream is broken after all.
func (sp *splice) complete(aw *attemptWriter) error {
	if sp.done {
		return nil
	}
	if aw != nil && aw.tr != nil {
		term := []byte(`{"type":"message_stop"}`) // (an Anthropic upstream, for an OpenAI client)
		if sp.api == translate.Anthropic {
			term = []byte("[DONE]")
		}
		out, err := aw.tr.Event(nil, term)
		if err == nil {
			_, err = sp.Write(out)
		}
		if err != nil {
			return err // (a continuation's held opening that turns out a restart, say)
		}
	}
	if !sp.done {
		sp.done = true
		term := "data: [DONE]\n\n"
		if sp.api == translate.Anthropic {
			term = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
		}
		_, _ = sp.w.Write([]byte(term))
	}
	_ = sp.FlushError()
	return nil
}

// continuationBody returns the client's request with the text already
// sent as a trailing assistant turn (trimmed of trailing whitespace,
// which Anthropic refuses there), in the client's format.
func (sp *splice) continuationBody(body []byte) ([]byte, error) {
	text := strings.TrimRight(sp.sent.String(), " \t\r\n")
	if text == "" {
		return body, nil
	}
	msg, _ := sjson.SetBytes([]byte(`{"role":"assistant"}`), "content", text)
	return sjson.SetRawBytes(body, "messages.-1", msg)
}

// continueUpstream applies the provider's continuation method to a
// continuation's request body in the provider's format.
func continueUpstream(body []byte, p *upstreams.Provider, sp *splice) ([]byte, error) {
	if p.API() != translate.OpenAI || strings.TrimSpace(sp.sent.String()) == "" {
		return body, nil
	}
	switch p.ContinuationMethod() {
	case upstreams.ContinueFinalMessage:
		out, err := sjson.SetBytes(body, "continue_final_message", true)
		if err != nil {
			return nil, err
		}
		return sjson.SetBytes(out, "add_generation_prompt", false)
	case upstreams.ContinueInstruction:
		msg, _ := sjson.SetBytes([]byte(`{"role":"user"}`), "content", continueInstruction)
		return sjson.SetRawBytes(body, "messages.-1", msg)
	}
	return body, nil
}

// rescueOn reports whether plan p's broken text streams are continued.
func (h *Handler) rescueOn(p *plan) bool {
	if p.rt != nil && p.rt.Rescue != nil {
		return *p.rt.Rescue
	}
	return h.Rescue == nil || *h.Rescue
}

// rescueNext decides, after an attempt of the loop, whether the loop
// goes on to continue a text stream: after a stream broke that a later
// candidate (more: one remains) can continue, and after a continuation
// that failed or was refused (a 400 on the prefill) while candidates
// remain. A broken call is carried into the continuation's usage only
// then; with none left, rescueEnd counts it.
func (h *Handler) rescueNext(sp *splice, p *plan, c *strategies.Candidate, res *attemptResult, more bool) bool {
	if sp == nil {
		return false
	}
	switch res.outcome {
	case outcomeBroken:
		if !more && len(p.continuers) > 0 && sp.rescue {
			// The loop's own candidates are tried: those that only
			// continue come next.
			p.candidates, p.continuers, more = append(p.candidates, p.continuers...), nil, true
		}
		if !more || !sp.broken() {
			return false
		}
		sp.carry(res.aw)
		h.logger.Warn("stream broke after it reached the client; trying to continue it on the next target",
			zap.String("route", p.route), zap.String("model", c.Model), zap.String("provider", c.Provider.Name),
			zap.Int("continuation", sp.continuations), zap.Error(res.err))
		return true
	case outcomeRetry, outcomeFinal:
		if !sp.rescuing() {
			return false
		}
		h.logger.Warn("a target could not continue the broken stream",
			zap.String("route", p.route), zap.String("model", c.Model), zap.String("provider", c.Provider.Name),
			zap.Int("status", res.status), zap.Error(res.err))
		return true
	}
	return false
}

// rescueEnd settles the attempt loop's result once a stream was being
// continued: with no continuation that finished the answer, the stream
// that reached the client is broken, whatever the last continuation's
// failure. It returns the usage of the calls that made the answer, the
// one the placeholders show (each call keeps its own in the record).
func rescueEnd(sp *splice, res *attemptResult) Usage {
	var last Usage
	if res.aw != nil {
		last = res.aw.usage
	}
	if !sp.rescuing() {
		return last
	}
	switch res.outcome {
	case outcomeDone, outcomeGone:
		return sp.total(last)
	}
	res.outcome = outcomeBroken
	cause := res.err
	if cause == nil && res.status != 0 {
		cause = fmt.Errorf("status %d", res.status)
	}
	res.err = fmt.Errorf("no target could continue it (last: %v)", cause)
	u := sp.prior
	if res.aw != nil && res.aw.committed && res.aw != sp.carried {
		// (the last call reached the client; a call carried, which no
		// later one could continue, is in prior already)
		u = u.add(res.aw.usage)
	}
	res.aw = &attemptWriter{stream: true} // (for the error event that ends the stream)
	return u
}
