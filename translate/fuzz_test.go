package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// The fuzz targets below run their seeds in plain go test; run one for
// longer with
//
//	go test ./translate -run '^$' -fuzz FuzzStreamToOpenAIClient -fuzztime 60s

// fuzzDirection describes one pair for the fuzz targets: the requests
// that make its exchanges, and the shape of the client's stream.
type fuzzDirection struct {
	dir       string   // testdata directory
	pair      Pair     // the pair
	requests  []string // requests making the exchanges a fuzz input picks from
	named     bool     // the client's events all carry an event line
	eventName func(data []byte) string
}

func fuzzDirections() (toOpenAIClient, toAnthropicClient fuzzDirection) {
	toOpenAIClient = fuzzDirection{
		dir:  "openai_to_anthropic",
		pair: Lookup(OpenAI, Anthropic),
		requests: []string{
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"response_format":{"type":"json_object"}}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},` +
				`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}`,
		},
	}
	toAnthropicClient = fuzzDirection{
		dir:  "anthropic_to_openai",
		pair: Lookup(Anthropic, OpenAI),
		requests: []string{
			`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"stream":true}`,
		},
		named: true,
	}
	return
}

// exchange makes the exchange of request i (modulo the number of
// requests) of d.
func (d fuzzDirection) exchange(tb testing.TB, i int) Exchange {
	tb.Helper()
	_, x, err := d.pair.Request([]byte(d.requests[i%len(d.requests)]), Options{})
	if err != nil {
		tb.Fatalf("seed request refused: %v", err)
	}
	return x
}

// testdataFiles returns the contents of the files called name in the
// cases of testdata/dir.
func testdataFiles(tb testing.TB, dir, name string) [][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*", name))
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		tb.Fatalf("no %s files under testdata/%s", name, dir)
	}
	return out
}

// sseEvent is one upstream event: its name and its data.
type sseEvent struct{ name, data []byte }

// parseSSE splits an event stream into events the way the handler does:
// events end at a blank line, data lines are joined with a newline, and
// events without data (comments, keep-alives) are dropped.
func parseSSE(stream []byte) []sseEvent {
	var events []sseEvent
	var cur sseEvent
	hasData := false
	flush := func() {
		if hasData && len(cur.data) > 0 {
			events = append(events, cur)
		}
		cur, hasData = sseEvent{}, false
	}
	for line := range bytes.Lines(stream) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			flush()
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			cur.name = bytes.TrimSpace(v)
		} else if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if hasData {
				cur.data = append(cur.data, '\n')
			}
			cur.data = append(cur.data, bytes.TrimSpace(v)...)
			hasData = true
		}
	}
	flush()
	return events
}

// checkClientEvents reports whether out is a sequence of complete,
// well-formed client events: each ends with a blank line and has one
// data line holding a JSON object (or [DONE], for the OpenAI client),
// preceded, for the Anthropic client, by exactly one event line naming
// the data's type.
func checkClientEvents(out []byte, named bool) error {
	if len(out) == 0 {
		return nil
	}
	if !bytes.HasSuffix(out, []byte("\n\n")) {
		return fmt.Errorf("output does not end with a blank line: %q", out)
	}
	for _, ev := range bytes.Split(out[:len(out)-2], []byte("\n\n")) {
		lines := bytes.Split(ev, []byte("\n"))
		var name []byte
		if named {
			if len(lines) != 2 {
				return fmt.Errorf("event has %d lines, want an event line and a data line: %q", len(lines), ev)
			}
			var ok bool
			if name, ok = bytes.CutPrefix(lines[0], []byte("event: ")); !ok || len(name) == 0 {
				return fmt.Errorf("event has no event line: %q", ev)
			}
			lines = lines[1:]
		}
		if len(lines) != 1 {
			return fmt.Errorf("event has %d lines, want one data line: %q", len(lines), ev)
		}
		data, ok := bytes.CutPrefix(lines[0], []byte("data: "))
		if !ok {
			return fmt.Errorf("event has no data line: %q", ev)
		}
		if !named && string(data) == "[DONE]" {
			continue
		}
		if !json.Valid(data) || !gjson.ParseBytes(data).IsObject() {
			return fmt.Errorf("event data is not a JSON object: %q", ev)
		}
		if named {
			if typ := gjson.GetBytes(data, "type"); typ.Type != gjson.String || typ.Str != string(name) {
				return fmt.Errorf("event name %q is not the data's type %s: %q", name, typ.Raw, ev)
			}
		}
	}
	return nil
}

// fuzzOps reads a fuzz input's control bytes.
type fuzzOps struct {
	ctl []byte
	pos int
}

func (o *fuzzOps) next() (byte, bool) {
	if o.pos >= len(o.ctl) {
		return 0, false
	}
	o.pos++
	return o.ctl[o.pos-1], true
}

func (o *fuzzOps) byte() byte { b, _ := o.next(); return b }

// scale maps a control byte onto [0, n].
func scale(b byte, n int) int { return int(b) * n / 255 }

// runStream feeds the events of an upstream stream to x as the control
// bytes direct: each byte either feeds the next event as it is, skips
// it, repeats it, swaps it with the one after it, truncates or mutates
// its data, feeds a slice of the raw stream cut at arbitrary bytes
// (parsed as an event when it holds one, as data otherwise), or feeds
// random bytes. When the control bytes run out the remaining events are
// fed unchanged. After each call the output must still start with what
// it held before, and what was appended must be complete, well-formed
// client events.
func runStream(t *testing.T, x Exchange, stream, ctl []byte, named bool) {
	events := parseSSE(stream)
	ops := fuzzOps{ctl: ctl}
	var out, prev []byte
	feed := func(name, data []byte) {
		before := len(out)
		var err error
		out, err = x.Event(out, data)
		if len(out) < before || !bytes.Equal(out[:before], prev) {
			t.Fatalf("Event(%q, %q) did not append to dst:\nbefore %q\nafter  %q", name, data, prev, out)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Event(%q, %q) error %v does not wrap ErrMalformed", name, data, err)
		}
		if cerr := checkClientEvents(out[before:], named); cerr != nil {
			t.Fatalf("Event(%q, %q): %v", name, data, cerr)
		}
		prev = append(prev[:0], out...)
	}
	i := 0
	for i < len(events) {
		op, ok := ops.next()
		if !ok {
			ev := events[i]
			feed(ev.name, ev.data)
			i++
			continue
		}
		ev := events[i]
		switch op % 8 {
		case 0: // as it is
			feed(ev.name, ev.data)
			i++
		case 1: // lost
			i++
		case 2: // twice
			feed(ev.name, ev.data)
			feed(ev.name, ev.data)
			i++
		case 3: // reordered
			if i+1 < len(events) {
				events[i], events[i+1] = events[i+1], events[i]
			}
			feed(events[i].name, events[i].data)
			i++
		case 4: // truncated
			feed(ev.name, ev.data[:scale(ops.byte(), len(ev.data))])
			i++
		case 5: // a slice of the raw stream, cut anywhere
			a, b := scale(ops.byte(), len(stream)), scale(ops.byte(), len(stream))
			if a > b {
				a, b = b, a
			}
			piece := stream[a:b]
			if evs := parseSSE(piece); len(evs) > 0 {
				for _, e := range evs {
					feed(e.name, e.data)
				}
			} else {
				feed(ev.name, piece)
			}
		case 6: // one byte changed
			data := bytes.Clone(ev.data)
			if len(data) > 0 {
				data[scale(ops.byte(), len(data)-1)] = ops.byte()
			}
			feed(ev.name, data)
			i++
		case 7: // random data, under the event's name
			n := int(ops.byte() % 48)
			var data []byte
			for range n {
				b, ok := ops.next()
				if !ok {
					break
				}
				data = append(data, b)
			}
			feed(ev.name, data)
		}
	}
}

// addStreamSeeds adds, for each stream.sse of d, the stream fed as it
// is and fed under a few pseudo-random control sequences.
func addStreamSeeds(f *testing.F, d fuzzDirection) {
	for n, s := range testdataFiles(f, d.dir, "stream.sse") {
		for v := range d.requests {
			f.Add(s, []byte(nil), uint8(v))
		}
		r := rand.New(rand.NewPCG(uint64(n), 1))
		for k := range 3 {
			ctl := make([]byte, 8+r.IntN(24))
			for j := range ctl {
				ctl[j] = byte(r.Uint32())
			}
			f.Add(s, ctl, uint8(k))
		}
	}
}

// FuzzStreamToOpenAIClient fuzzes the translation of an Anthropic stream
// for an OpenAI client.
func FuzzStreamToOpenAIClient(f *testing.F) {
	d, _ := fuzzDirections()
	addStreamSeeds(f, d)
	f.Fuzz(func(t *testing.T, stream, ctl []byte, variant uint8) {
		runStream(t, d.exchange(t, int(variant)), stream, ctl, d.named)
	})
}

// FuzzStreamToAnthropicClient fuzzes the translation of an OpenAI stream
// for an Anthropic client.
func FuzzStreamToAnthropicClient(f *testing.F) {
	_, d := fuzzDirections()
	addStreamSeeds(f, d)
	f.Fuzz(func(t *testing.T, stream, ctl []byte, variant uint8) {
		runStream(t, d.exchange(t, int(variant)), stream, ctl, d.named)
	})
}

// FuzzRequest fuzzes the request translation of both pairs with JSON
// objects: each must give a *RequestError or a JSON object. As in the
// handler, the body always carries a model.
func FuzzRequest(f *testing.F) {
	for _, dir := range []string{"openai_to_anthropic", "anthropic_to_openai"} {
		for _, b := range testdataFiles(f, dir, "request.json") {
			f.Add(b)
		}
	}
	pairs := []Pair{Lookup(OpenAI, Anthropic), Lookup(Anthropic, OpenAI)}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) || !gjson.ParseBytes(body).IsObject() {
			return // the handler answers 400 before any translation
		}
		if !gjson.GetBytes(body, "model").Exists() {
			var err error
			if body, err = sjson.SetBytes(body, "model", "m"); err != nil {
				return
			}
		}
		for _, p := range pairs {
			out, x, err := p.Request(body, Options{})
			if err != nil {
				var re *RequestError
				if !errors.As(err, &re) {
					t.Fatalf("%T: error %v is not a *RequestError\nrequest %s", p, err, body)
				}
				continue
			}
			if !json.Valid(out) || !gjson.ParseBytes(out).IsObject() {
				t.Fatalf("%T: output is not a JSON object\nrequest %s\noutput  %s", p, body, out)
			}
			if x == nil {
				t.Fatalf("%T: no Exchange for request %s", p, body)
			}
		}
	})
}

// FuzzResponse fuzzes the translation of whole answers by every kind of
// exchange: each must give a JSON object or an error wrapping
// ErrMalformed.
func FuzzResponse(f *testing.F) {
	for _, dir := range []string{"openai_to_anthropic", "anthropic_to_openai"} {
		for _, b := range testdataFiles(f, dir, "response.json") {
			f.Add(b)
		}
	}
	toOpenAI, toAnthropic := fuzzDirections()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range []fuzzDirection{toOpenAI, toAnthropic} {
			for i := range d.requests {
				out, err := d.exchange(t, i).Response(body)
				if err != nil {
					if !errors.Is(err, ErrMalformed) {
						t.Fatalf("%s: error %v does not wrap ErrMalformed\nbody %s", d.dir, err, body)
					}
					continue
				}
				if !json.Valid(out) || !gjson.ParseBytes(out).IsObject() {
					t.Fatalf("%s: output is not a JSON object\nbody   %s\noutput %s", d.dir, body, out)
				}
			}
		}
	})
}

// FuzzError fuzzes the translation of error bodies: a body the exchange
// does not recognise comes back unchanged, and a JSON body gives JSON.
func FuzzError(f *testing.F) {
	for _, dir := range []string{"openai_to_anthropic", "anthropic_to_openai"} {
		paths, _ := filepath.Glob(filepath.Join("testdata", dir, "*", "error_*.json"))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, 429)
		}
	}
	f.Add([]byte("<html>502 Bad Gateway</html>"), 502)
	toOpenAI, toAnthropic := fuzzDirections()
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		for _, d := range []fuzzDirection{toOpenAI, toAnthropic} {
			out := d.exchange(t, 0).Error(status, body)
			if !json.Valid(body) {
				if !bytes.Equal(out, body) {
					t.Fatalf("%s: a body that is not JSON was changed: %q → %q", d.dir, body, out)
				}
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("%s: output is not JSON\nbody   %s\noutput %s", d.dir, body, out)
			}
		}
	})
}

// FuzzAppendString checks appendString against encoding/json.
func FuzzAppendString(f *testing.F) {
	for _, s := range appendStringCases {
		f.Add(s.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAppendString(t, s)
	})
}
