package llmroute

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/translate"
)

// Errors that stop an upstream stream.
var (
	errMalformedEvent = errors.New("upstream sent a malformed stream event")
	errEventTooLong   = errors.New("upstream sent a stream line longer than 16 MiB")
	errBodyTooLong    = errors.New("upstream answer to translate is larger than 16 MiB")
)

const (
	maxErrorBody = 64 << 10 // upstream error bodies kept for the client
	usageTail    = 16 << 10 // tail of non-stream bodies kept to read usage
	maxEventLine = 16 << 20 // longest stream line held while waiting for its end
	maxTranslate = 16 << 20 // longest whole body held for translation
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
// translated can still fall back).
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

	// onStart runs once, on the first body byte of a good answer.
	onStart func(aw *attemptWriter)
	// onCommit runs once, just before the real header is written.
	onCommit func(aw *attemptWriter)
	// onWrite runs on every body write after commit.
	onWrite func()

	started    bool   // the first body byte of a good answer arrived
	stream     bool   // the response is an event stream
	body       []byte // a whole body waiting for translation
	pending    []byte
	scanned    int             // bytes of pending already inspected as complete lines
	searched   int             // bytes of pending known to hold no newline after scanned
	terminated bool            // the stream carried its terminator (or an error event)
	streamErr  error           // why the writer stopped the stream itself
	reported   translate.Usage // the usage objects read so far
	usage      Usage           // reported, in the placeholders' terms
	tail       []byte          // last bytes of a non-stream body
	size       int64           // body bytes passed through
}

func newAttemptWriter(ctx context.Context, w http.ResponseWriter) *attemptWriter {
	return &attemptWriter{ctx: ctx, w: w, header: make(http.Header)}
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
		aw.start()
	}
	if aw.onWrite != nil {
		aw.onWrite()
	}
	if !aw.committed {
		// A whole body to translate.
		if len(aw.body)+len(p) > maxTranslate {
			aw.streamErr = errBodyTooLong
			return 0, errBodyTooLong
		}
		aw.body = append(aw.body, p...)
		return len(p), nil
	}
	if aw.stream {
		return aw.writeEvents(p)
	}
	aw.keepTail(p)
	n, err := aw.w.Write(p)
	aw.size += int64(n)
	return n, err
}

// start notes the first body byte of a good answer and commits it,
// unless it is a whole body to translate.
func (aw *attemptWriter) start() {
	aw.started = true
	aw.stream = strings.HasPrefix(aw.header.Get("Content-Type"), "text/event-stream")
	if aw.onStart != nil {
		aw.onStart(aw)
	}
	if aw.tr == nil || aw.stream {
		aw.commit()
	}
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
		dst[k] = v
	}
	if aw.onCommit != nil {
		aw.onCommit(aw)
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
	if aw.started && !aw.committed {
		out, err := aw.tr.Response(aw.body)
		if err != nil {
			aw.streamErr = err
			return err
		}
		aw.readUsage((*translate.Usage).Read, gjson.GetBytes(aw.body, "usage"))
		aw.header.Set("Content-Length", strconv.Itoa(len(out)))
		aw.commit()
		n, _ := aw.w.Write(out)
		aw.size += int64(n)
		return nil
	}
	if !aw.committed && !aw.failed() {
		aw.commit()
	}
	if len(aw.pending) > 0 {
		// An event the upstream did not end with a blank line.
		out := aw.pending
		var err error
		if !aw.inspectLine(aw.pending[aw.scanned:]) {
			err = errMalformedEvent
		} else if aw.rewrites() {
			out, err = aw.passEvent(nil, aw.pending)
		}
		if err != nil {
			aw.streamErr = err
		} else {
			_, _ = aw.w.Write(out)
		}
		aw.pending, aw.scanned, aw.searched = nil, 0, 0
	}
	if !aw.stream {
		aw.readUsage((*translate.Usage).Read, aw.tailUsage())
	}
	return nil
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
	var out []byte // the complete events, translated
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
			out, err = aw.passEvent(out, aw.pending[done:aw.scanned])
			done = aw.scanned
		}
		if err != nil {
			if aw.rewrites() {
				_, _ = aw.w.Write(out)
			} else if done > 0 {
				_, _ = aw.w.Write(aw.pending[:done])
			}
			aw.pending, aw.scanned, aw.searched = nil, 0, 0
			aw.streamErr = err
			return len(p), err
		}
	}
	if done == 0 {
		return len(p), nil
	}
	if !aw.rewrites() {
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

// rewrites reports whether stream events are rewritten on their way to
// the client (translated, or some held back), rather than passed on as
// they came.
func (aw *attemptWriter) rewrites() bool { return aw.tr != nil || aw.dropUsage }

// passEvent appends what the client gets of one upstream event (its
// lines up to and including the blank line that ends it) to dst when
// events are rewritten: its translation, nothing for a usage-only chunk
// the client did not ask for, or the event as it is. When they are not,
// it does nothing: the caller passes the pending bytes on as they came.
func (aw *attemptWriter) passEvent(dst, event []byte) ([]byte, error) {
	switch {
	case aw.tr != nil:
		return aw.translateEvent(dst, event)
	case !aw.dropUsage, usageOnly(event):
		return dst, nil
	}
	return append(dst, event...), nil
}

// usageOnly reports whether an OpenAI stream event is the usage chunk:
// no choices, a usage object.
func usageOnly(event []byte) bool {
	for line := range bytes.Lines(event) {
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:"))
		if !ok {
			continue
		}
		ev := gjson.ParseBytes(bytes.TrimSpace(data))
		if ch := ev.Get("choices"); ch.IsArray() && !ch.Get("0").Exists() && ev.Get("usage").IsObject() {
			return true
		}
	}
	return false
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
	data, isData := bytes.CutPrefix(line, []byte("data:"))
	if isData && !aw.inspectData(bytes.TrimSpace(data)) {
		return false
	}
	return true
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
	ev := gjson.ParseBytes(data)
	switch ev.Get("type").Str {
	case "message_start":
		aw.readUsage((*translate.Usage).ReadAnthropic, ev.Get("message.usage"))
	case "message_delta":
		aw.readUsage((*translate.Usage).ReadAnthropic, ev.Get("usage"))
	case "message_stop", "error":
		aw.terminated = true
	case "response.completed", "response.incomplete", "response.failed":
		aw.terminated = true
		aw.readUsage((*translate.Usage).ReadOpenAI, ev.Get("response.usage"))
	default:
		if ev.Get("error").Exists() {
			aw.terminated = true
		}
		aw.readUsage((*translate.Usage).ReadOpenAI, ev.Get("usage"))
	}
	return true
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
