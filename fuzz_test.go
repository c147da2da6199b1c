package llmroute

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-llm-route/llmroute/translate"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// FuzzParseRequest checks that parseRequest never panics, and that what
// it accepts is a JSON object with a non-empty string model.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{
		chatBody, completionBody, embeddingBody, embeddingsBody, responsesBody, anthropicBody, completionsBody,
		``, `{}`, `[]`, `null`, `"x"`, `{"model":""}`, `{"model":"m","model":"n"}`,
		`{"model":"m","max_tokens":1e400}`, `{"model":"m","stream":"yes"}`, `{"model":"m","n":-1}`,
		`{"model":"m","x":"\"[[[["}`, `{"model":"m\u0000"}`, `{"mod\u0065l":"m"}`,
		strings.Repeat("[", 100), `{"model":"m","a":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat("}", 70) + `}`,
		"{\"model\":\"m\xff\"}", `{"model":"m"}garbage`,
		`{"models":["a"],"model":"m"}`, `{"model":"m","models":[]}`, ` { "models" : 1 , "model" : "m" , "x" : 2 } `,
		`{"model":"m","MODEL":"n"}`, `{"Model":"m"}`, `{"model":"m","max_to\u212aens":1}`,
	} {
		f.Add([]byte(seed), uint8(64))
	}
	f.Add([]byte(`{"model":"m","a":[[[[1]]]]}`), uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, depth uint8) {
		maxDepth := int(depth%100) + 1
		req, rerr := parseRequest(body, "model", maxDepth)
		if rerr != nil {
			if req != nil {
				t.Fatal("both a request and an error")
			}
			if rerr.status != 400 || rerr.code == "" || rerr.msg == "" {
				t.Fatalf("bad error: %+v", rerr)
			}
			return
		}
		if req.Model == "" {
			t.Fatal("accepted an empty model")
		}
		if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		if m := gjson.GetBytes(body, "model"); m.Type != gjson.String || m.Str != req.Model {
			t.Fatalf("model %q, body has %s", req.Model, m.Raw)
		}
		if !bytes.Equal(req.Body, body) {
			t.Fatal("Body differs from the input")
		}
		if req.MaxTokens < 0 || req.MaxTokens > maxTokensLimit {
			t.Fatalf("MaxTokens = %d", req.MaxTokens)
		}
		// Whatever was accepted can be rewritten for an upstream, as
		// sjson rewrites it, and its models list dropped: every other
		// member stays as it was.
		rewritten, err := rewriteBody(body, "model", "upstream-model", false, nil)
		if err != nil {
			t.Fatalf("rewriteBody: %v", err)
		}
		out := sentBytes(t, &rewritten)
		if want, _ := sjson.SetBytes(body, "model", "upstream-model"); !bytes.Equal(out, want) {
			t.Fatalf("rewritten body differs from sjson's:\n got %q\nwant %q", out, want)
		}
		droppedBody, err := rewriteBody(body, "model", "upstream-model", true, nil)
		if err != nil {
			t.Fatalf("rewriteBody: %v", err)
		}
		dropped := sentBytes(t, &droppedBody)
		if !gjson.ValidBytes(dropped) {
			t.Fatalf("dropping models made invalid JSON: %q", dropped)
		}
		var got, want []string
		gjson.ParseBytes(dropped).ForEach(func(k, v gjson.Result) bool {
			got = append(got, k.Raw+":"+v.Raw)
			return true
		})
		gjson.ParseBytes(out).ForEach(func(k, v gjson.Result) bool {
			if k.Str != "models" {
				want = append(want, k.Raw+":"+v.Raw)
			}
			return true
		})
		if !slices.Equal(got, want) {
			t.Fatalf("dropping models:\n got %q\nwant %q", got, want)
		}
		// Parameters that add members (spliced when the body has none of
		// their keys) or change them (sjson) give what sjson gives, up to
		// the white space around the object, which sjson drops.
		for _, ps := range []map[string]json.RawMessage{includeUsage, {"a.b": json.RawMessage(`[1]`), "max_tokens": json.RawMessage(`5`)}} {
			withParams, err := rewriteBody(body, "model", "upstream-model", false, ps)
			want, werr := sjson.SetBytes(body, "model", "upstream-model")
			for _, path := range slices.Sorted(maps.Keys(ps)) {
				if werr == nil {
					want, werr = sjson.SetRawBytes(want, path, ps[path])
				}
			}
			if (err != nil) != (werr != nil) {
				t.Fatalf("rewriteBody: %v, sjson: %v", err, werr)
			}
			if err != nil {
				continue // (a parameter under an array, say)
			}
			if got := sentBytes(t, &withParams); !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				t.Fatalf("with parameters %v:\n got %q\nwant %q", slices.Sorted(maps.Keys(ps)), got, want)
			}
		}
	})
}

// maxFuzzStream caps the streams the fuzz targets send, to keep each
// run quick; lines longer than that are TestAttemptWriterLongLine's.
const maxFuzzStream = 64 << 10

// FuzzEventStream sends arbitrary bytes, split at arbitrary points,
// through an attemptWriter in event stream mode. It must not panic, and
// what reaches the client is always a prefix of the input: all of it
// unless the writer stopped at a malformed event.
func FuzzEventStream(f *testing.F) {
	for _, seed := range []string{
		openAIStream, anthropicStream, responsesStream,
		strings.ReplaceAll(openAIStream, "\n", "\r\n"),
		"data: {\"a\":1}\n\ndata: {bad\n\ndata: [DONE]\n\n",
		"data: [DONE]",
		"data:\n\ndata:    \n\n: comment\n",
		"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":\"x\"}}}\n\n",
		"\n\n\n",
		"",
		"data:A",
	} {
		f.Add([]byte(seed), uint64(1))
		f.Add([]byte(seed), uint64(0xdeadbeef))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		data = data[:min(len(data), maxFuzzStream)]
		rng := rand.New(rand.NewPCG(seed, uint64(len(data))))
		rec := newRecorder()
		aw := newTestWriter(rec)
		aw.Header().Set("Content-Type", "text/event-stream")
		aw.WriteHeader(http.StatusOK)
		var werr error
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(64))
			written, err := aw.Write(rest[:n])
			if err != nil {
				if !errors.Is(err, errMalformedEvent) && !errors.Is(err, errErrorEvent) {
					t.Fatalf("Write: %v", err)
				}
				werr = err
				break
			}
			if written != n {
				t.Fatalf("Write reported %d of %d bytes", written, n)
			}
			rest = rest[n:]
		}
		if werr == nil {
			aw.finish()
		}
		// A stream whose first event with data is an error, or that has
		// none, is not passed on at all.
		out := rec.Body.Bytes()
		if errors.Is(aw.streamErr, errErrorEvent) || errors.Is(aw.streamErr, errNoEvent) {
			if len(out) != 0 || rec.Code != 0 {
				t.Fatalf("a stream that failed before its first event reached the client: %q", out)
			}
			return
		}
		// Otherwise the writer stops at a malformed event: in a Write,
		// or in the incomplete last line finish looks at.
		stopped := werr != nil || aw.streamErr != nil
		if stopped && !errors.Is(aw.streamErr, errMalformedEvent) {
			t.Fatalf("stopped with streamErr = %v", aw.streamErr)
		}
		if !bytes.HasPrefix(data, out) {
			t.Fatalf("output is not a prefix of the input:\n in %q\nout %q", data, out)
		}
		if !stopped && !bytes.Equal(out, data) {
			t.Fatalf("output differs from the input:\n in %q\nout %q", data, out)
		}
		if stopped && len(out) == len(data) {
			t.Fatal("a malformed event was passed on")
		}
	})
}

// FuzzTranslatedEventStream sends an upstream event stream, split at
// arbitrary points, through an attemptWriter that translates it. It must
// not panic; the client's stream is made of whole, well-formed events,
// and it is the same however the upstream bytes were split.
func FuzzTranslatedEventStream(f *testing.F) {
	for _, seed := range []string{
		anthropicStream, openAIStream,
		strings.ReplaceAll(anthropicStream, "\n", "\r\n"),
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3}\n\n",
		"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}\n\ndata: [DONE]\n\n",
		"data: {bad\n\n",
		": keep-alive\n\n",
	} {
		f.Add([]byte(seed), uint64(1), true)
		f.Add([]byte(seed), uint64(7), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, fromAnthropic bool) {
		data = data[:min(len(data), maxFuzzStream)]
		client, provider := translate.OpenAI, translate.Anthropic
		if !fromAnthropic {
			client, provider = translate.Anthropic, translate.OpenAI
		}
		run := func(split func(int) int) (string, error) {
			_, x, err := translate.Lookup(client, provider).Request([]byte(`{"model":"m","max_tokens":9,"messages":[],"stream":true}`), translate.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			aw := newTestWriter(rec)
			aw.tr = x
			aw.Header().Set("Content-Type", "text/event-stream")
			aw.WriteHeader(http.StatusOK)
			for rest := data; len(rest) > 0; {
				n := min(len(rest), split(len(rest)))
				if _, err := aw.Write(rest[:n]); err != nil {
					return rec.Body.String(), err
				}
				rest = rest[n:]
			}
			_ = aw.finish()
			return rec.Body.String(), aw.streamErr
		}
		rng := rand.New(rand.NewPCG(seed, uint64(len(data))))
		whole, wholeErr := run(func(n int) int { return n })
		split, splitErr := run(func(int) int { return 1 + rng.IntN(64) })
		created := regexp.MustCompile(`"created":\d+`)
		if created.ReplaceAllString(whole, "") != created.ReplaceAllString(split, "") || (wholeErr == nil) != (splitErr == nil) {
			t.Fatalf("split changed the output:\nwhole %q (%v)\nsplit %q (%v)", whole, wholeErr, split, splitErr)
		}
		if whole != "" && !strings.HasSuffix(whole, "\n\n") {
			t.Fatalf("output does not end with a whole event: %q", whole)
		}
		for ev := range strings.SplitSeq(strings.TrimSuffix(whole, "\n\n"), "\n\n") {
			if ev == "" {
				continue
			}
			name, data := "", ""
			for line := range strings.SplitSeq(ev, "\n") {
				if v, ok := strings.CutPrefix(line, "event: "); ok {
					name = v
				} else if v, ok := strings.CutPrefix(line, "data: "); ok {
					data = v
				} else {
					t.Fatalf("unexpected line %q in %q", line, whole)
				}
			}
			if data != "[DONE]" && (!gjson.Valid(data) || !gjson.Parse(data).IsObject()) {
				t.Fatalf("event data is not a JSON object: %q", ev)
			}
			if fromAnthropic == (name != "") {
				t.Fatalf("event line presence wrong for the client format: %q", ev)
			}
			if name != "" && gjson.Get(data, "type").Str != name {
				t.Fatalf("event name does not match its type: %q", ev)
			}
		}
	})
}

// FuzzClientModels sends arbitrary `models` lists through
// withClientModels. It must not panic; it must refuse what is not a
// list of distinct model names no longer than its bound, and otherwise
// add each listed name's targets once, in order, exactly as a plain
// reading of the list with gjson does.
func FuzzClientModels(f *testing.F) {
	h := mustLoadHandler(f, resolveConfig)
	for _, seed := range []string{
		`["m"]`, `["r","m"]`, `["m","m"]`, `["a/m","b/m"]`, `[1]`, `"m"`, `[]`, `null`, `["nope"]`,
		`["m\u0000"]`, `["\u006d"]`, `["\ud800","\udc00"]`, `[ "solo" , "fallback" ]`, `[["m"]]`,
		`["auto","cheapest","fastest","best_quality","r","fallback","m","aliased","claude","mixed","solo","a/slashed","c/claude"]`,
		`["m",` + strings.Repeat(`"r",`, 30) + `"m"]`,
	} {
		f.Add([]byte(seed))
	}
	limit := len(h.routes)
	for _, m := range h.models {
		limit += len(m.Providers)
	}
	f.Fuzz(func(t *testing.T, list []byte) {
		body := append(append([]byte(`{"model":"m","models":`), list...), '}')
		if _, rerr := parseRequest(body, "model", defaultMaxDepth); rerr != nil {
			return // refused before any list is read
		}
		base := []*Target{{Model: "m"}}
		got, rerr := h.withClientModels(body, base, nil)

		// The reference: gjson's reading of the list.
		want, wantCode := base, ""
		arr := gjson.GetBytes(body, "models")
		if arr.Exists() && !arr.IsArray() {
			wantCode = "invalid_models" // a string, an object, null
		}
		if arr.IsArray() {
			var names []string
			for _, v := range arr.Array() {
				switch {
				case v.Type != gjson.String:
					wantCode = "invalid_models"
				case len(names) == limit:
					wantCode = "invalid_models"
				case slices.Contains(names, v.Str):
					wantCode = "invalid_models"
				}
				if wantCode != "" {
					break
				}
				names = append(names, v.Str)
				_, more, err := h.targetsFor(v.Str)
				if err != nil {
					wantCode = err.code
					break
				}
				for _, t := range more {
					if !slices.ContainsFunc(want, func(o *Target) bool { return o.Model == t.Model && o.Provider == t.Provider }) {
						want = append(want, t)
					}
				}
			}
		}
		if wantCode != "" {
			if rerr == nil || rerr.code != wantCode {
				t.Fatalf("list %s: got %v, want %s", list, rerr, wantCode)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("list %s: refused with %s (%s)", list, rerr.code, rerr.msg)
		}
		if len(got) != len(want) || len(got) > 1+limit*len(h.providers) {
			t.Fatalf("list %s: %d targets, want %d", list, len(got), len(want))
		}
		for i := range got {
			if got[i].Model != want[i].Model || got[i].Provider != want[i].Provider {
				t.Fatalf("list %s: target %d is %s@%s, want %s@%s", list, i, got[i].Model, got[i].Provider, want[i].Model, want[i].Provider)
			}
		}
		if len(base) != 1 {
			t.Fatal("withClientModels changed its input")
		}
	})
}

// FuzzPathCheck sends arbitrary request targets through the path check
// and, when it passes them, through the upstream path a provider builds
// for enable_on_path_suffix *: however an upstream reads that path
// (decoding it once or twice, taking '\' for '/', ";" parameters off,
// then removing dot segments), it stays under the provider's base path.
func FuzzPathCheck(f *testing.F) {
	for _, seed := range []string{
		"/v1/chat/completions", "/v1/%2e%2e/%2e%2e/admin", "/v1/..%2f..%2fadmin", "/x/../../../admin",
		"/v1/./x", "/v1/..;/admin", "/v1/%252e%252e/admin", "/v1/%5c..%5cadmin", "/v1/a/b?x=1", "/", "//..", "/v1/.",
		"/v1/%2e", "/v1/x%00y", "/v1//admin",
	} {
		f.Add(seed)
	}
	p := &upstreams.Provider{Name: "p", Format: upstreams.FormatOpenAI, BasePath: "/v1/restricted"}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !safePath(u.Path) {
			return
		}
		r := &http.Request{Method: "POST", URL: u, Header: http.Header{}}
		p.PrepareRequest(r, endpointFor(u.Path, "*"), "m", nil)
		sent := r.URL.EscapedPath()
		for _, read := range []func(string) string{
			func(s string) string { return s },
			func(s string) string { d, _ := url.PathUnescape(s); return d },
			func(s string) string { d, _ := url.PathUnescape(s); d, _ = url.PathUnescape(d); return d },
		} {
			for _, variant := range []string{read(sent), strings.ReplaceAll(read(sent), "\\", "/"), semicolonsOff(read(sent))} {
				if got := path.Clean(variant); got != "/v1/restricted" && !strings.HasPrefix(got, "/v1/restricted/") {
					t.Fatalf("request target %q: upstream path %q reads as %q", target, sent, got)
				}
			}
		}
	})
}

// semicolonsOff removes ";" parameters from every segment of a path, as
// Java servlet containers do.
func semicolonsOff(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		segs[i] = s
	}
	return strings.Join(segs, "/")
}
