package llmroute

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
	"github.com/caddy-llm-route/llmroute/strategies"
)

// Endpoints llm_route understands by path suffix; one that ends with another
// (/chat/completions, /completions) comes first.
var knownEndpoints = []string{"/chat/completions", "/completions", "/embeddings", "/responses", "/messages", countTokensEndpoint}

// countTokensEndpoint is Anthropic's token counting endpoint; providers of
// other formats have it answered by the gateway's estimate.
const countTokensEndpoint = "/messages/count_tokens"

// endpointFor returns the upstream endpoint of a request path: a known
// API endpoint, else the matched configured suffix, else the path with a
// leading /v1 removed.
func endpointFor(path, matched string) string {
	for _, e := range knownEndpoints {
		if strings.HasSuffix(path, e) {
			return e
		}
	}
	if matched != "" && matched != "*" {
		return matched
	}
	if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
		return "/" + rest
	}
	return path
}

// safePath reports whether a request path (decoded) can give an
// upstream path: it begins with a slash (not so the "*" of OPTIONS), no
// segment of it starts with a dot (".", "..", and
// "..;", which some servers read as ".."), whether the client encoded the
// dots or the slashes (%2e, %2f) or not, and it holds no '%' or '\' (a
// server that decodes twice, or takes '\' for '/', could find a dot
// segment there). With enable_on_path_suffix *, the path after /v1 is the
// endpoint the provider is called at, under its base path.
func safePath(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	for seg := range strings.SplitSeq(path, "/") {
		if strings.HasPrefix(seg, ".") {
			return false
		}
	}
	return !strings.ContainsAny(path, "%\\")
}

// requestError is a client error answered before routing.
type requestError struct {
	status int
	code   string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(code, format string, args ...any) *requestError {
	return &requestError{status: 400, code: code, msg: fmt.Sprintf(format, args...)}
}

// maxKeys bounds the top-level keys of a request body: no API has
// nearly as many parameters, and each costs the duplicate check memory.
const maxKeys = 1024

// maxTokensLimit bounds integer token fields; anything above is absurd.
const maxTokensLimit = 100_000_000

// parseRequest validates body and builds the request view: the body, the
// model, the stream flag and the output cap (its prompt is read later,
// and only when routing needs it). Validation is strict on what routing
// reads (the model, stream and token fields) and guards the process:
// nesting is checked iteratively before anything recursive looks at the
// body.
func parseRequest(body []byte, modelKey string, maxDepth int) (*strategies.Request, *requestError) {
	switch jsonscan.Check(body, maxDepth) {
	case jsonscan.TooDeep:
		return nil, badRequest("too_deep", "request body is nested deeper than %d levels", maxDepth)
	case jsonscan.Invalid:
		return nil, badRequest("invalid_json", "request body is not valid JSON")
	}
	if jsonscan.SkipSpace(body, 0) == len(body) || body[jsonscan.SkipSpace(body, 0)] != '{' {
		return nil, badRequest("invalid_request", "request body must be a JSON object")
	}
	// One pass over the top-level members: duplicates, and the fields
	// routing reads. The body is scanned in place.
	req := &strategies.Request{Body: body}
	var perr *requestError
	var model gjson.Result
	top, _, _ := strings.Cut(modelKey, ".")
	foldedTop := foldKey(top)
	// Keys are compared as Go's encoding/json matches them to fields (and
	// so do Ollama and other Go servers): ignoring case, last one wins.
	// The set holds a hash of each key's folded form, so that no key is
	// copied.
	var seen keySet
	jsonscan.EachMember(body, 0, func(m jsonscan.Member) bool {
		if seen.len() == maxKeys {
			perr = badRequest("too_many_keys", "request body has more than %d top-level keys", maxKeys)
			return false
		}
		if !seen.add(foldHash(m.Name)) {
			perr = badRequest("duplicate_key", "request body has the key %q more than once (keys differing only in case count as one)", truncate(m.Key(), 64))
			return false
		}
		if foldable(m.Name) && !m.Is(top) && (foldEqual(m.Name, foldedTop) || slices.ContainsFunc(readKeys, func(k string) bool { return foldEqual(m.Name, k) })) {
			// The gateway reads the key in lower case; a server that
			// ignores case reads this one.
			perr = ambiguousKey(m.Key(), foldKey(m.Key()))
			return false
		}
		switch {
		case m.Is(modelKey):
			model = gjson.ParseBytes(m.Value)
		case m.Is("stream"):
			v := gjson.ParseBytes(m.Value)
			if v.Type == gjson.Null {
				break
			}
			if !v.IsBool() {
				perr = badRequest("invalid_stream", "\"stream\" must be true or false")
				return false
			}
			req.Stream = v.Bool()
		case m.Is("max_tokens"), m.Is("max_completion_tokens"), m.Is("max_output_tokens"), m.Is("n"):
			n, err := tokenCount(m.Key(), gjson.ParseBytes(m.Value))
			if err != nil {
				perr = err
				return false
			}
			if !m.Is("n") {
				req.MaxTokens = max(req.MaxTokens, n)
			}
		case m.Is("temperature"), m.Is("top_p"), m.Is("presence_penalty"), m.Is("frequency_penalty"):
			if v := gjson.ParseBytes(m.Value); v.Type == gjson.Number && (math.IsInf(v.Float(), 0) || math.Abs(v.Float()) > 1e6) {
				perr = badRequest("invalid_number", "%q is out of range", m.Key())
				return false
			}
		}
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if top != modelKey {
		if model, perr = nestedKey(body, modelKey); perr != nil {
			return nil, perr
		}
	}
	switch {
	case !model.Exists():
		return nil, badRequest("missing_model", "request body has no %q field", modelKey)
	case model.Type != gjson.String || model.Str == "":
		return nil, badRequest("invalid_model", "%q must be a non-empty string", modelKey)
	}
	req.Model = model.Str
	return req, nil
}

// keySet is a set of key hashes: the first few in an array searched in
// turn (a request has a dozen keys or so), the rest in a map.
type keySet struct {
	few  [24]uint64
	n    int
	more map[uint64]struct{}
}

func (s *keySet) len() int { return s.n + len(s.more) }

// add adds h, and reports false if it was in the set already.
func (s *keySet) add(h uint64) bool {
	if slices.Contains(s.few[:s.n], h) {
		return false
	}
	if _, ok := s.more[h]; ok {
		return false
	}
	if s.n < len(s.few) {
		s.few[s.n] = h
		s.n++
		return true
	}
	if s.more == nil {
		s.more = make(map[uint64]struct{}, 16)
	}
	s.more[h] = struct{}{}
	return true
}

// readKeys are the top-level keys the gateway reads besides the model
// key: those routing and limits read, and those of the prompt
// (strategies.Request.ReadPrompt). A key that differs from one of them
// only in case is refused: the gateway would not see it, a server that
// ignores case would.
var readKeys = []string{
	"stream", "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens", "n",
	"temperature", "top_p", "presence_penalty", "frequency_penalty", "models",
	"messages", "system", "instructions", "prompt", "input", "tools", "functions",
	"response_format", "output_format", "text", "output_config",
}

func ambiguousKey(key, as string) *requestError {
	return badRequest("ambiguous_key", "request body has the key %q, which servers that ignore case read as %q", truncate(key, 64), truncate(as, 64))
}

// foldKey returns the form of an object key under which Go's
// encoding/json considers keys equal: ASCII letters in lower case, other
// characters folded through upper and lower case, so that the long s
// (ſ) matches "s" and the Kelvin sign matches "k". A key with nothing to
// fold is returned as is.
func foldKey(k string) string {
	if !foldable(k) {
		return k
	}
	b := make([]byte, 0, len(k))
	for _, r := range k {
		b = utf8.AppendRune(b, foldRune(r))
	}
	return string(b)
}

// foldable reports whether foldKey would change anything in k: whether
// it holds an upper case ASCII letter or a character beyond ASCII.
func foldable[T string | []byte](k T) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		return unicode.ToLower(r)
	}
	return unicode.ToLower(unicode.ToUpper(unicode.ToLower(r)))
}

// foldEqual reports whether foldKey(k) == folded, without allocating.
func foldEqual(k []byte, folded string) bool {
	j := 0
	for i := 0; i < len(k); {
		r, n := utf8.DecodeRune(k[i:])
		f, m := utf8.DecodeRuneInString(folded[j:])
		if m == 0 || f != foldRune(r) {
			return false
		}
		i, j = i+n, j+m
	}
	return j == len(folded)
}

// keySeed seeds foldHash; it is the process's own, so no client can
// choose keys whose hashes collide.
var keySeed = maphash.MakeSeed()

// foldHash returns a hash of foldKey(k), without allocating.
func foldHash(k []byte) uint64 {
	if !foldable(k) {
		return maphash.Bytes(keySeed, k)
	}
	var h maphash.Hash
	h.SetSeed(keySeed)
	var buf [64]byte
	for i := 0; i < len(k); {
		// the folded key, a bufferful at a time
		n := 0
		for i < len(k) && n <= len(buf)-utf8.UTFMax {
			r, size := utf8.DecodeRune(k[i:])
			n += utf8.EncodeRune(buf[n:], foldRune(r))
			i += size
		}
		_, _ = h.Write(buf[:n])
	}
	return h.Sum64()
}

// nestedKey finds the value at a dotted path of object keys (such as
// request.model), refusing a key on the way that its object holds twice
// or in another case. A path with gjson's special characters is read
// with gjson, unchecked.
func nestedKey(body []byte, path string) (gjson.Result, *requestError) {
	if strings.ContainsAny(path, "\\*?#|@!") {
		return gjson.GetBytes(body, path), nil
	}
	v := body
	for part := range strings.SplitSeq(path, ".") {
		var found []byte
		var perr *requestError
		folded := foldKey(part)
		jsonscan.EachMember(v, 0, func(m jsonscan.Member) bool {
			switch {
			case !foldEqual(m.Name, folded):
				return true
			case found != nil:
				perr = badRequest("duplicate_key", "request body has the key %q more than once (keys differing only in case count as one)", truncate(path, 64))
			case !m.Is(part):
				perr = ambiguousKey(m.Key(), part)
			default:
				found = m.Value
				return true
			}
			return false
		})
		if perr != nil || found == nil {
			return gjson.Result{}, perr
		}
		v = found
	}
	return gjson.ParseBytes(v), nil
}

// tokenCount validates a token count field: a finite integer within
// 0..maxTokensLimit, or null.
func tokenCount(name string, v gjson.Result) (int64, *requestError) {
	if v.Type == gjson.Null {
		return 0, nil
	}
	if v.Type != gjson.Number {
		return 0, badRequest("invalid_number", "%q must be a number", name)
	}
	n := v.Float()
	if math.IsInf(n, 0) || math.IsNaN(n) || n < 0 || n > maxTokensLimit || n != math.Trunc(n) {
		return 0, badRequest("invalid_number", "%q must be an integer between 0 and %d", name, maxTokensLimit)
	}
	return int64(n), nil
}

// rewriteBody returns the body for one attempt: the model field set to
// model, each set of parameters applied in turn (a later set wins), and
// the client's `models` list removed when dropModels is set. A top-level
// model key is rewritten without copying the body, and so are
// parameters that add new members (such as stream_options.include_usage
// on a body without stream_options): the result is the parts of body
// around the edits. Other parameters are set with sjson, on a copy.
func rewriteBody(body []byte, modelKey, model string, dropModels bool, params ...map[string]json.RawMessage) (sendBody, error) {
	var topBuf [4]string
	added, tops := newMembers(modelKey, params, topBuf[:0])
	out, spliced, paramsDone := spliceModel(body, modelKey, model, dropModels, added, tops)
	if spliced && paramsDone {
		return out, nil
	}
	var flat []byte
	if spliced {
		flat = out.bytes()
	} else {
		var err error
		if flat, err = sjson.SetBytes(body, modelKey, model); err != nil {
			return sendBody{}, err
		}
	}
	readded := false // a parameter set the models list again
	var one [1]string
	for _, ps := range params {
		for _, path := range paramPaths(ps, &one) {
			var err error
			if flat, err = sjson.SetRawBytes(flat, path, ps[path]); err != nil {
				return sendBody{}, err
			}
			readded = readded || path == "models" || strings.HasPrefix(path, "models.")
		}
	}
	if dropModels && (!spliced || readded) {
		var err error
		if flat, err = sjson.DeleteBytes(flat, "models"); err != nil {
			return sendBody{}, err
		}
	}
	return wholeBody(flat), nil
}

// paramPaths returns the paths of a set of parameters in order; one
// holds the path of a set of one.
func paramPaths(ps map[string]json.RawMessage, one *[1]string) []string {
	switch len(ps) {
	case 0:
		return nil
	case 1:
		for k := range ps {
			one[0] = k
		}
		return one[:]
	}
	return slices.Sorted(maps.Keys(ps))
}

// newMembers returns the text that setting params adds at the end of the
// top-level object, as sjson writes it (`,"a":{"b":1}` for a.b), and the
// first key of each path, when each path is a plain dotted path of keys
// (no array index, no pattern) whose first key no other path shares and
// is neither modelKey nor "models", appended to tops; else nil, nil.
// The members are new only if the body has none of those keys, which
// spliceModel checks. Without parameters the text is nil and tops is
// returned empty.
func newMembers(modelKey string, params []map[string]json.RawMessage, tops []string) ([]byte, []string) {
	var out []byte
	var one [1]string
	for _, ps := range params {
		for _, path := range paramPaths(ps, &one) {
			v := ps[path]
			top, _, _ := strings.Cut(path, ".")
			if len(v) == 0 || top == modelKey || top == "models" || slices.Contains(tops, top) {
				return nil, nil
			}
			tops = append(tops, top)
			if out == nil {
				out = make([]byte, 0, 64+len(path)+len(v))
			}
			depth := 0
			for seg := range strings.SplitSeq(path, ".") {
				if !plainKey(seg) {
					return nil, nil
				}
				if depth > 0 {
					out = append(out, '{')
				} else {
					out = append(out, ',')
				}
				out = append(append(append(out, '"'), seg...), '"', ':')
				depth++
			}
			out = append(out, v...)
			for range depth - 1 {
				out = append(out, '}')
			}
		}
	}
	return out, tops
}

// plainKey reports whether sjson reads seg, a segment of a path, as an
// object key of its own: letters, digits, '_' and '-', not starting with
// a digit or '-' (an array index to sjson).
func plainKey(seg string) bool {
	if seg == "" || seg[0] == '-' || '0' <= seg[0] && seg[0] <= '9' {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// spliceModel sets a top-level model key of body to model, drops the
// top-level `models` member if asked, and adds the members added
// (newMembers) at the end of the object when the body has none of the
// keys tops (tops nil: there are parameters it cannot add), without
// copying the body: the result is the parts of body around the edits.
// It reports false, doing nothing, when the key is a path or is missing,
// and whether it added the members.
func spliceModel(body []byte, modelKey, model string, dropModels bool, added []byte, tops []string) (sendBody, bool, bool) {
	if strings.ContainsAny(modelKey, ".\\*?#|@!") {
		return sendBody{}, false, false
	}
	type span struct{ start, end int }
	value, list := span{-1, -1}, span{-1, -1} // the model's value, the models list
	listPrev, listNext := -1, -1
	prevEnd := -1 // where the previous member's value ends
	addable := tops != nil
	jsonscan.EachMember(body, 0, func(m jsonscan.Member) bool {
		if list.start >= 0 && listNext < 0 {
			listNext = m.KeyStart
		}
		switch {
		case value.start < 0 && m.Is(modelKey):
			value = span{m.ValueStart, m.ValueStart + len(m.Value)}
		case dropModels && list.start < 0 && m.Is("models"):
			list, listPrev = span{m.KeyStart, m.ValueStart + len(m.Value)}, prevEnd
		}
		if addable && slices.ContainsFunc(tops, m.Is) {
			addable = false
		}
		prevEnd = m.ValueStart + len(m.Value)
		return true
	})
	if value.start < 0 {
		return sendBody{}, false, false
	}
	// The edits, in the order of the body: the model's value replaced,
	// the list dropped, the new members added before the closing brace.
	type edit struct {
		span
		with []byte
	}
	var edits [3]edit
	n := 0
	edits[n] = edit{value, quoteJSON(model)}
	n++
	if list.start >= 0 {
		// The list goes with the comma before it, or, if it comes first,
		// the one after it.
		if listPrev >= 0 {
			list.start = listPrev
		} else if listNext >= 0 {
			list.end = listNext
		}
		edits[n] = edit{span: list}
		n++
	}
	if close := jsonscan.SkipSpace(body, prevEnd); addable && len(added) > 0 && close < len(body) && body[close] == '}' {
		edits[n] = edit{span{close, close}, added}
		n++
	} else if len(added) > 0 || !addable {
		addable = false
	}
	if n > 1 && edits[1].start < edits[0].start {
		edits[0], edits[1] = edits[1], edits[0]
	}
	var out sendBody
	at := 0
	for _, e := range edits[:n] {
		out.add(body[at:e.start])
		out.add(e.with)
		at = e.end
	}
	out.add(body[at:])
	return out, true, addable
}

// quoteJSON returns s as a JSON string, escaped as sjson escapes it.
func quoteJSON(s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > 0x7f || c == '"' || c == '\\' {
			b, _ := json.Marshal(s)
			return b
		}
	}
	return append(append(append(make([]byte, 0, len(s)+2), '"'), s...), '"')
}

// truncate shortens s to at most n bytes, marked with an ellipsis. It
// cuts before the character that straddles the limit, never inside it
// (if s is not UTF-8 there, it cuts at n).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return s[:n] + "…"
}
