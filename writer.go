package llmroute

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
	"github.com/caddy-llm-route/llmroute/translate"
)

// Errors that stop an upstream stream.
var (
	errMalformedEvent = errors.New("upstream sent a malformed stream event")
	errEventTooLong   = errors.New("upstream sent a stream line longer than 16 MiB")
	errBodyTooLong    = errors.New("upstream answer to translate is larger than 16 MiB")
	errCutShort       = errors.New("upstream answer is a JSON text cut short")
	errErrorEvent     = errors.New("upstream stream began with an error event")
	errNoEvent        = errors.New("upstream stream ended before its first event")
	errRefusal        = errors.New("upstream answer ended with a content-policy refusal")
	errJSONToStream   = errors.New("upstream answered a stream request with JSON")
	errStreamToJSON   = errors.New("upstream answered a request that is no stream with an event stream")
	errNotAnAnswer    = errors.New("upstream answer is neither JSON nor an event stream (a redirect, a page or nothing)")
)

const (
	maxErrorBody = 64 << 10 // upstream error bodies kept for the client
	usageTail    = 16 << 10 // tail of non-stream bodies kept to read usage
	maxEventLine = 16 << 20 // longest stream line held while waiting for its end
	maxTranslate = 16 << 20 // longest whole body held for translation
	maxHeld      = 1 << 20  // longest JSON answer held until it is whole
)

// Usage is the token usage an answer reported, as the placeholders show
// it: PromptTokens counts the cached prompt tokens too, whatever the API.
// translate.Usage reads it from the wire.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	CacheReadTokens  int64
	CacheWriteTokens int64
}

// add returns the sum of two usages.
func (u Usage) add(v Usage) Usage {
	return Usage{PromptTokens: u.PromptTokens + v.PromptTokens, CompletionTokens: u.CompletionTokens + v.CompletionTokens,
		CacheReadTokens: u.CacheReadTokens + v.CacheReadTokens, CacheWriteTokens: u.CacheWriteTokens + v.CacheWriteTokens}
}

// attemptWriter stands between one attempt's reverse proxy and the
// client. It keeps the attempt's headers in a map of its own and holds
// the status until the first body byte, so a failed attempt (an error
// status, an error, or a stall before the first byte) leaves no trace
// on the real response and the next target can be tried. Error statuses
// are buffered, never passed through; the handler decides what the
// client sees. Once committed it passes bytes through, and for event
// streams it checks every event, reads usage and notes whether the
// stream ended properly.
//
// When the attempt's request was translated, tr translates the answer:
// each stream event as it completes, or a whole body once it has all
// arrived (it is committed only then, so a body that cannot be
// translated can still fall back). A JSON answer is held until it is
// whole too, up to maxHeld, so that one cut short by a clean close falls
// back as well; a longer one is passed on as it comes, and if it turns
// out cut short the attempt fails (the handler aborts the response). An
// event stream is held until its first event with data: an error event
// there makes the attempt fail like an error status, so the next target
// can be tried; any other is committed, and the stream flows on as it
// arrives.
type attemptWriter struct {
	w      http.ResponseWriter
	header http.Header
	ctx    context.Context // the attempt's; once done, nothing more is committed

	status      int
	wroteHeader bool
	committed   bool
	errBody     []byte

	tr translate.Exchange // nil when the answer needs no translation
	// dropUsage holds back the usage-only chunk of an OpenAI stream whose
	// client did not ask for it (the gateway asked, to count usage).
	dropUsage bool
	// refuses fails an answer held until its end, or a stream before
	// its first event with content (held past its preamble), that is a
	// content-policy refusal (fallback_on content_filter, fallback.go):
	// nothing of it reached the client.
	refuses bool
	// wants is what the request asked for. A JSON answer to a stream
	// request, or an event stream to one that is no stream, is no answer
	// (errJSONToStream, errStreamToJSON): it fails at its first byte,
	// like one that cannot be translated.
	wants answerKind
	// apiOnly: the endpoint is one of the API's (knownEndpoints), which
	// answer with JSON or an event stream and nothing else. A redirect, a
	// page or an empty body is no answer (errNotAnAnswer).
	apiOnly bool

	// hooks is told of the answer's start, its commit and its writes
	// (nil: nobody is).
	hooks attemptHooks

	started      bool      // the first body byte of a good answer arrived
	stream       bool      // the response is an event stream
	json         *jsonScan // where a JSON answer is, to tell whether it ended (nil: not JSON)
	jsonState    jsonScan  // what json points to (the writer holds it)
	body         []byte    // a whole body waiting for translation, or to be whole
	pending      []byte
	scanned      int             // bytes of pending already inspected as complete lines
	searched     int             // bytes of pending known to hold no newline after scanned
	terminated   bool            // the stream carried its terminator (or an error event)
	chunkEnd     bool            // a translated chat completion stream carried its finish_reason
	heldData     bool            // a held stream has had a data line
	heldError    bool            // a held stream has had an error event
	heldRefuse   bool            // a held stream has had a refusal, with refuses
	heldPreamble bool            // a held stream has had events that only open it, with refuses (preamble)
	begun        bool            // the hooks were told the answer started
	usageChunk   bool            // a data line of the event under way is a usage-only chunk
	streamErr    error           // why the writer stopped the stream itself
	reported     translate.Usage // the usage objects read so far
	usage        Usage           // reported, in the placeholders' terms
	tail         []byte          // last bytes of a non-stream body
	size         int64           // body bytes passed through
}

// attemptHooks is what an attempt does at the turning points of its
// writer (attemptRun, handler.go).
type attemptHooks interface {
	// started runs once, on the first body byte of a good answer (for
	// an event stream, at its first event with data, a held preamble's
	// included).
	started(aw *attemptWriter)
	// committing runs once, just before the real header is written.
	committing(aw *attemptWriter)
	// wrote runs, once started, on every body write; for an event
	// stream, on every data line (comments and keep-alives do not
	// count).
	wrote()
}

// answerKind is the kind of answer a request asked for.
type answerKind uint8

const (
	wantsAny    answerKind = iota // either (a writer outside an attempt)
	wantsStream                   // an event stream
	wantsWhole                    // a whole answer, not a stream
)

// init sets aw up as an attempt's writer to w.
func (aw *attemptWriter) init(ctx context.Context, w http.ResponseWriter) {
	aw.ctx, aw.w, aw.header = ctx, w, make(http.Header)
}

// Header returns the attempt's own header map.
func (aw *attemptWriter) Header() http.Header { return aw.header }

// WriteHeader records the status; 1xx responses are dropped.
func (aw *attemptWriter) WriteHeader(status int) {
	if aw.wroteHeader || status < 200 {
		return
	}
	aw.wroteHeader = true
	aw.status = status
}

// failed reports whether the attempt answered with an error status.
func (aw *attemptWriter) failed() bool { return aw.wroteHeader && aw.status >= 400 }

// Write passes body bytes through, committing the response first.
func (aw *attemptWriter) Write(p []byte) (int, error) {
	if !aw.wroteHeader {
		aw.WriteHeader(http.StatusOK)
	}
	if aw.failed() {
		if room := maxErrorBody - len(aw.errBody); room > 0 {
			aw.errBody = append(aw.errBody, p[:min(room, len(p))]...)
		}
		return len(p), nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !aw.started {
		if err := aw.ctx.Err(); err != nil {
			return 0, err // the attempt was abandoned (first_byte_timeout)
		}
		if err := aw.start(); err != nil {
			return 0, err
		}
	}
	if aw.hooks != nil && aw.begun && !aw.stream {
		aw.hooks.wrote() // (a stream's, at each data line: inspectLine)
	}
	if !aw.committed && !aw.stream {
		switch {
		case aw.tr == nil && len(aw.body)+len(p) > maxHeld:
			// Too long to hold: what came so far goes on, and the rest
			// as it comes.
			aw.commit()
			held := aw.body
			aw.body = nil
			if _, err := aw.passOn(held); err != nil {
				return 0, err
			}
		case len(aw.body)+len(p) > maxTranslate:
			aw.streamErr = errBodyTooLong
			return 0, errBodyTooLong
		default:
			// A whole body to translate, or to hold until it is whole.
			aw.body = append(aw.body, p...)
			return len(p), nil
		}
	}
	if aw.stream {
		return aw.writeEvents(p)
	}
	return aw.passOn(p)
}

// passOn writes non-stream body bytes to the client.
func (aw *attemptWriter) passOn(p []byte) (int, error) {
	aw.keepTail(p)
	aw.json.feed(p)
	n, err := aw.w.Write(p)
	aw.size += int64(n)
	return n, err
}

// start notes the first body byte of a good answer and commits it,
// unless it is a whole body to translate, a JSON answer to hold, or an
// event stream (held until its first event). An answer of the wrong
// type for the request fails.
func (aw *attemptWriter) start() error {
	aw.started = true
	ct := aw.header.Get("Content-Type")
	aw.stream = isStream(ct)
	switch {
	case aw.wants == wantsStream && isJSON(ct):
		aw.streamErr = errJSONToStream
	case aw.wants == wantsWhole && aw.stream:
		aw.streamErr = errStreamToJSON
	case aw.apiOnly && (aw.status >= 300 || !aw.stream && !isJSON(ct)):
		aw.streamErr = errNotAnAnswer
	case aw.stream:
		return nil
	}
	if aw.streamErr != nil {
		return aw.streamErr
	}
	if isJSON(ct) {
		aw.json = &aw.jsonState
	}
	aw.begin()
	if aw.tr == nil && aw.json == nil {
		aw.commit()
	}
	return nil
}

// openStream decides, at the end of an event of a held stream, what
// comes of it: after an error event the attempt fails, with the event's
// data as its error answer and a status from its error type; after an
// event with data the stream is committed. Until then (comments,
// keep-alives) it stays held.
func (aw *attemptWriter) openStream() error {
	switch {
	case aw.heldError:
		return errErrorEvent
	case aw.heldRefuse:
		return errRefusal
	case aw.heldData:
		if err := aw.ctx.Err(); err != nil {
			return err // the attempt was abandoned (first_byte_timeout)
		}
		aw.begin()
		aw.commit()
	case aw.heldPreamble:
		// The answer has begun (the first-byte timer stops, the idle
		// timer runs); it is held until it says something.
		if err := aw.ctx.Err(); err != nil {
			return err
		}
		aw.begin()
	}
	return nil
}

// begin tells the hooks, once, that the answer has begun.
func (aw *attemptWriter) begin() {
	if !aw.begun {
		aw.begun = true
		if aw.hooks != nil {
			aw.hooks.started(aw)
		}
	}
}

func isStream(ct string) bool { return strings.HasPrefix(ct, "text/event-stream") }

// isJSON reports whether a Content-Type is JSON's.
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(strings.ToLower(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// commit writes the attempt's status and headers to the client.
func (aw *attemptWriter) commit() {
	if aw.committed {
		return
	}
	aw.committed = true
	if aw.stream {
		aw.header.Del("Content-Length")
	}
	dst := aw.w.Header()
	for k, v := range aw.header {
		if strings.HasPrefix(k, "X-Llm-") {
			continue // the gateway's own (an upstream's would pass for them)
		}
		dst[k] = v
	}
	if aw.hooks != nil {
		aw.hooks.committing(aw)
	}
	aw.w.WriteHeader(aw.status)
}

// FlushError flushes what has been committed; before commit it does
// nothing, so an attempt that sent only headers can still be discarded.
func (aw *attemptWriter) FlushError() error {
	if !aw.committed {
		return nil
	}
	return http.NewResponseController(aw.w).Flush()
}

// Flush implements http.Flusher.
func (aw *attemptWriter) Flush() { _ = aw.FlushError() }

// finish completes a successful attempt: a response with no body is
// committed, a whole body waiting for translation is translated and
// passed on, and so is a partial last stream event. It fails, leaving
// nothing committed, when a body cannot be translated.
func (aw *attemptWriter) finish() error {
	if !aw.wroteHeader {
		aw.WriteHeader(http.StatusOK)
	}
	if aw.stream && !aw.committed {
		return aw.finishHeld()
	}
	if aw.started && !aw.committed {
		if aw.refuses && refusal(aw.body) {
			aw.readUsage((*translate.Usage).Read, gjson.GetBytes(aw.body, "usage"))
			aw.streamErr = errRefusal
			return errRefusal
		}
		out := aw.body
		var usage gjson.Result
		if aw.tr != nil {
			var err error
			if out, err = aw.tr.Response(aw.body); err != nil {
				aw.streamErr = err
				return err
			}
			usage = gjson.GetBytes(aw.body, "usage")
		} else if jsonscan.Check(out, math.MaxInt) != jsonscan.Valid {
			aw.streamErr = errCutShort
			return errCutShort
		} else {
			usage = inPlace(jsonscan.Lookup(aw.body, "usage")) // (valid JSON, read in place)
		}
		aw.readUsage((*translate.Usage).Read, usage)
		aw.header.Set("Content-Length", strconv.Itoa(len(out)))
		aw.commit()
		n, _ := aw.w.Write(out)
		aw.size += int64(n)
		return nil
	}
	if !aw.committed && !aw.failed() {
		if ct := aw.header.Get("Content-Type"); aw.status == http.StatusOK && (isJSON(ct) || isStream(ct)) {
			// a JSON answer or a stream without a byte
			aw.streamErr = errCutShort
			if isStream(ct) {
				aw.streamErr = errNoEvent
			}
			return aw.streamErr
		}
		if aw.apiOnly {
			aw.streamErr = errNotAnAnswer
			return aw.streamErr
		}
		aw.commit()
	}
	if len(aw.pending) > 0 {
		// An event the upstream did not end with a blank line.
		out := aw.pending
		var err error
		if !aw.inspectLine(aw.pending[aw.scanned:]) {
			err = errMalformedEvent
		} else if !aw.passesAsIs() {
			out, err = aw.passEvent(nil, aw.pending)
		}
		if err != nil {
			aw.streamErr = err
		} else {
			_, _ = aw.w.Write(out)
		}
		aw.pending, aw.scanned, aw.searched = nil, 0, 0
		aw.usageChunk = false
	}
	if !aw.stream {
		if aw.json != nil && !aw.json.ended() {
			aw.streamErr = errCutShort
			return errCutShort
		}
		aw.readUsage((*translate.Usage).Read, aw.tailUsage())
	}
	return nil
}

// jsonScan follows a JSON text written in pieces, far enough to tell
// whether it ended: the nesting depth, and whether it is inside a
// string. A nil *jsonScan follows nothing.
type jsonScan struct {
	depth    int
	inString bool
	escaped  bool
	began    bool
}

func (s *jsonScan) feed(p []byte) {
	if s == nil {
		return
	}
	for _, c := range p {
		switch {
		case s.inString:
			switch {
			case s.escaped:
				s.escaped = false
			case c == '\\':
				s.escaped = true
			case c == '"':
				s.inString = false
			}
		case c == '"':
			s.inString, s.began = true, true
		case c == '{' || c == '[':
			s.depth++
			s.began = true
		case c == '}' || c == ']':
			s.depth--
		case c > ' ':
			s.began = true
		}
	}
}

// ended reports whether the text fed so far is a whole value: begun, and
// every string, object and array in it closed.
func (s *jsonScan) ended() bool {
	return s.began && s.depth == 0 && !s.inString
}

// finishHeld ends a stream that was still held: its last event (whose
// blank line may be missing) decides, as in writeEvents; a stream with
// no event with data fails.
func (aw *attemptWriter) finishHeld() error {
	if aw.streamErr != nil {
		return aw.streamErr // a Write stopped it already
	}
	var err error
	if len(aw.pending) > aw.scanned && !aw.inspectLine(aw.pending[aw.scanned:]) {
		err = errMalformedEvent
	}
	if err == nil {
		err = aw.openStream()
	}
	if err == nil && !aw.committed {
		err = errNoEvent
	}
	if err != nil {
		aw.fail(err)
		return err
	}
	out := aw.pending
	if !aw.passesAsIs() {
		if out, err = aw.passEvent(nil, aw.pending); err != nil {
			aw.streamErr = err
			return err
		}
	}
	n, _ := aw.w.Write(out)
	aw.size += int64(n)
	aw.pending, aw.scanned, aw.searched = nil, 0, 0
	aw.usageChunk = false
	return nil
}

// fail stops a stream the writer will not pass on any further. Before
// commit, an error event becomes the attempt's error answer.
func (aw *attemptWriter) fail(err error) {
	if errors.Is(err, errErrorEvent) && !aw.committed {
		aw.status, aw.errBody = errorEventAnswer(aw.pending)
	}
	aw.pending, aw.scanned, aw.searched = nil, 0, 0
	aw.usageChunk = false
	aw.streamErr = err
}

// errorEventAnswer returns the error answer an error event stands for:
// its data, and a status from its error type.
func errorEventAnswer(events []byte) (int, []byte) {
	var body []byte
	for line := range bytes.Lines(events) {
		if data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:")); ok {
			if data = bytes.TrimSpace(data); len(data) > 0 && gjson.ValidBytes(data) {
				body = bytes.Clone(data)
			}
		}
	}
	if status := translate.ErrorStatus(gjson.ParseBytes(body).Get("error")); status != 0 {
		return status, body
	}
	return http.StatusBadGateway, body
}

// writeEvents passes complete events through, checking each line. The
// lines of an event wait until the blank line that ends it, so a client
// only ever sees whole events. A malformed event is not passed on: the
// stream stops with errMalformedEvent.
func (aw *attemptWriter) writeEvents(p []byte) (int, error) {
	aw.pending = append(aw.pending, p...)
	if len(aw.pending) > maxEventLine {
		aw.pending = nil
		aw.streamErr = errEventTooLong
		return len(p), errEventTooLong
	}
	done := 0      // end of the last complete event
	var out []byte // the complete events as the client gets them, once one is not passed on as it came
	copied := false
	for {
		// A long line arrives over many writes: search only the bytes not
		// searched yet, so the cost stays linear in the line's length.
		from := max(aw.scanned, aw.searched)
		i := bytes.IndexByte(aw.pending[from:], '\n')
		if i < 0 {
			aw.searched = len(aw.pending)
			break
		}
		line := aw.pending[aw.scanned : from+i+1]
		aw.scanned = from + i + 1
		var err error
		if !aw.inspectLine(line) {
			err = errMalformedEvent
		} else if len(bytes.TrimRight(line, "\r\n")) == 0 {
			if !aw.committed {
				// The end of an event of a held stream.
				if err = aw.openStream(); err == nil && !aw.committed {
					continue
				}
			}
			if err == nil {
				// While the events go on as they came, they are sent as
				// pending holds them; from the first that does not, a copy.
				if copied || !aw.passesAsIs() {
					if !copied {
						out, copied = append(out, aw.pending[:done]...), true
					}
					out, err = aw.passEvent(out, aw.pending[done:aw.scanned])
				}
				done = aw.scanned
				aw.usageChunk = false
			}
		}
		if err != nil {
			if aw.committed {
				if copied {
					_, _ = aw.w.Write(out)
				} else if done > 0 {
					_, _ = aw.w.Write(aw.pending[:done])
				}
			}
			aw.fail(err)
			return len(p), err
		}
	}
	if done == 0 {
		return len(p), nil
	}
	if !copied {
		out = aw.pending[:done]
	}
	n, err := aw.w.Write(out)
	aw.size += int64(n)
	aw.pending = append(aw.pending[:0], aw.pending[done:]...)
	aw.scanned -= done
	aw.searched = max(aw.searched-done, 0)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// passesAsIs reports whether the event under way (its lines inspected)
// goes to the client as it came: not translated, and not a usage-only
// chunk held back.
func (aw *attemptWriter) passesAsIs() bool {
	return aw.tr == nil && !(aw.dropUsage && aw.usageChunk)
}

// passEvent appends what the client gets of one upstream event (its
// lines up to and including the blank line that ends it, inspected) to
// dst: its translation, nothing for a usage-only chunk the client did
// not ask for, or the event as it is. (Callers pass an event that
// passesAsIs on from where it is, without it.)
func (aw *attemptWriter) passEvent(dst, event []byte) ([]byte, error) {
	switch {
	case aw.tr != nil:
		return aw.translateEvent(dst, event)
	case aw.dropUsage && aw.usageChunk:
		return dst, nil
	}
	return append(dst, event...), nil
}

// translateEvent appends the client's translation of one upstream event
// (its lines up to and including the blank line that ends it) to dst.
// Without a translation it does nothing.
func (aw *attemptWriter) translateEvent(dst, event []byte) ([]byte, error) {
	if aw.tr == nil {
		return dst, nil
	}
	// Each data line is a whole JSON value (inspectLine made sure);
	// comments, keep-alives and event names carry nothing to translate.
	for line := range bytes.Lines(event) {
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:"))
		if data = bytes.TrimSpace(data); !ok || len(data) == 0 {
			continue
		}
		var err error
		if dst, err = aw.tr.Event(dst, data); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// inspectLine reads one event stream line: it notes terminators and
// usage, and reports false for a data line that is not valid JSON.
func (aw *attemptWriter) inspectLine(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	if name, ok := bytes.CutPrefix(line, []byte("event:")); ok && !aw.committed && string(bytes.TrimSpace(name)) == "error" {
		aw.heldError = true
	}
	data, isData := bytes.CutPrefix(line, []byte("data:"))
	if !isData {
		return true
	}
	data = bytes.TrimSpace(data)
	if len(data) > 0 && !aw.committed {
		if aw.refuses && preamble(data) {
			aw.heldPreamble = true
		} else {
			aw.heldData = true
		}
	}
	if len(data) > 0 && aw.hooks != nil && aw.begun && !keepAlive(data) {
		aw.hooks.wrote()
	}
	return aw.inspectData(data)
}

// inspectData reads the payload of a data line.
func (aw *attemptWriter) inspectData(data []byte) bool {
	if len(data) == 0 {
		return true
	}
	if bytes.Equal(data, []byte("[DONE]")) {
		aw.terminated = true
		return true
	}
	if !gjson.ValidBytes(data) {
		return false
	}
	f := readEvent(data)
	if !aw.committed && f.isError() {
		aw.heldError = true
	}
	if !aw.committed && aw.refuses && refused(inPlace(data)) {
		aw.heldRefuse = true
	}
	if f.usageOnly() {
		aw.usageChunk = true
	}
	if aw.tr != nil && !aw.chunkEnd && f.choices.IsArray() {
		// (Its translation ends the answer only at the terminator: the
		// splice cannot see the finish before.)
		aw.chunkEnd = f.choices.Get("0.finish_reason").Type == gjson.String
	}
	switch f.typ.Str {
	case "message_start":
		aw.readUsage((*translate.Usage).ReadAnthropic, f.message.Get("usage"))
	case "message_delta":
		aw.readUsage((*translate.Usage).ReadAnthropic, f.usage)
	case "message_stop", "error":
		aw.terminated = true
	case "response.completed", "response.incomplete", "response.failed":
		aw.terminated = true
		aw.readUsage((*translate.Usage).ReadOpenAI, f.response.Get("usage"))
	default:
		if f.isError() {
			aw.terminated = true
		}
		aw.readUsage((*translate.Usage).ReadOpenAI, f.usage)
	}
	return true
}

// preamble reports whether a stream event only opens the answer and
// says nothing of it yet: an OpenAI chat chunk with the role alone (its
// first: no content, refusal, tool call, reasoning or finish), Anthropic's
// message_start, ping or the start of an empty text block, or the
// Responses API's events before the first delta (the response created
// and in progress, an output item or content part added). With
// refuses, a stream is held past these, so that a refusal that follows
// them (OpenAI's delta.refusal after the role's chunk, Anthropic's
// stop_reason refusal before any text) can still move on.
func preamble(data []byte) bool {
	if !gjson.ValidBytes(data) {
		return false
	}
	f := readEvent(data)
	switch f.typ.Str {
	case "message_start", "ping",
		"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added":
		return true
	case "content_block_start":
		b := inPlace(data).Get("content_block")
		return b.Get("type").Str == "text" && b.Get("text").Str == ""
	case "":
		ch := f.choices.Get("0")
		if !ch.Exists() || f.choices.Get("1").Exists() || ch.Get("finish_reason").Type == gjson.String {
			return false
		}
		// The role alone: any other member with a value (content, a
		// refusal, a tool call, reasoning) says something.
		only := true
		ch.Get("delta").ForEach(func(k, v gjson.Result) bool {
			only = k.Str == "role" || v.Type == gjson.Null || v.Type == gjson.String && v.Str == ""
			return only
		})
		return only
	}
	return false
}

// keepAlive reports whether a data line is Anthropic's ping: it keeps
// the connection alive and says nothing of the answer's progress.
func keepAlive(data []byte) bool {
	return len(data) <= 32 && bytes.Contains(data, []byte(`"ping"`)) && gjson.GetBytes(data, "type").Str == "ping"
}

// eventFields are the members of a stream event's data that the gateway
// reads, found in one walk of its top level (the first member of each
// key, as gjson's Get finds it), in place: they point into the data, so
// a string kept once it changes must be cloned. The members of an event
// that is no object are all missing.
type eventFields struct {
	typ, err, usage, choices, message, response gjson.Result
	id, model, created                          gjson.Result // (read by the splice, rescue.go)
}

// readEvent reads the members of a stream event's data (valid JSON).
func readEvent(data []byte) eventFields {
	var f eventFields
	jsonscan.EachMember(data, 0, func(m jsonscan.Member) bool {
		var v *gjson.Result
		switch string(m.Name) {
		case "type":
			v = &f.typ
		case "error":
			v = &f.err
		case "usage":
			v = &f.usage
		case "choices":
			v = &f.choices
		case "message":
			v = &f.message
		case "response":
			v = &f.response
		case "id":
			v = &f.id
		case "model":
			v = &f.model
		case "created":
			v = &f.created
		default:
			return true
		}
		if !v.Exists() {
			*v = inPlace(m.Value)
		}
		return true
	})
	return f
}

// inPlace parses JSON text as gjson.ParseBytes does, without copying it:
// what it returns points into b, and must not be kept once b changes.
func inPlace(b []byte) gjson.Result {
	if len(b) == 0 {
		return gjson.Result{}
	}
	return gjson.Parse(unsafe.String(unsafe.SliceData(b), len(b)))
}

// isError reports whether a stream event's data is an error: an
// Anthropic error event, or an object with an error (not a null one, as
// the Responses API's events carry).
func (f *eventFields) isError() bool {
	return f.typ.Str == "error" || f.err.IsObject() || f.err.Type == gjson.String && f.err.Str != ""
}

// usageOnly reports whether an OpenAI stream event is the usage chunk:
// no choices, a usage object. (The usage is looked at first: most
// chunks have none, and finding choices' first element parses it.)
func (f *eventFields) usageOnly() bool {
	return f.usage.IsObject() && f.choices.IsArray() && !f.choices.Get("0").Exists()
}

// readUsage reads a usage object with one of translate.Usage's readers
// and updates the usage the placeholders show.
func (aw *attemptWriter) readUsage(read func(*translate.Usage, gjson.Result), v gjson.Result) {
	read(&aw.reported, v)
	r := aw.reported
	aw.usage = Usage{PromptTokens: r.Prompt(), CompletionTokens: r.Output, CacheReadTokens: r.CacheRead, CacheWriteTokens: r.CacheWrite}
}

// keepTail keeps the last bytes of a non-stream body, where the usage
// object sits in OpenAI and Anthropic answers.
func (aw *attemptWriter) keepTail(p []byte) {
	if len(p) >= usageTail {
		aw.tail = append(aw.tail[:0], p[len(p)-usageTail:]...)
		return
	}
	if over := len(aw.tail) + len(p) - usageTail; over > 0 {
		aw.tail = append(aw.tail[:0], aw.tail[over:]...)
	}
	aw.tail = append(aw.tail, p...)
}

// tailUsage finds the usage object of a non-stream body: in the whole
// body when it was small enough to keep, else the last "usage" object in
// its tail.
func (aw *attemptWriter) tailUsage() gjson.Result {
	if aw.size <= usageTail {
		return gjson.GetBytes(aw.tail, "usage")
	}
	if i := bytes.LastIndex(aw.tail, []byte(`"usage"`)); i >= 0 {
		rest := aw.tail[i+len(`"usage"`):]
		if j := bytes.IndexByte(rest, ':'); j >= 0 {
			return gjson.ParseBytes(rest[j+1:])
		}
	}
	return gjson.Result{}
}
