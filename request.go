package llmroute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

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

// maxTokensLimit bounds integer token fields; anything above is absurd.
const maxTokensLimit = 100_000_000

// parseRequest validates body and builds the request view: the body, the
// model, the stream flag and the output cap (its prompt is read later,
// and only when routing needs it). Validation is strict on what routing
// reads (the model, stream and token fields) and guards the process:
// nesting is checked iteratively before anything recursive looks at the
// body.
func parseRequest(body []byte, modelKey string, maxDepth int) (*strategies.Request, *requestError) {
	if err := checkDepth(body, maxDepth); err != nil {
		return nil, err
	}
	if !gjson.ValidBytes(body) {
		return nil, badRequest("invalid_json", "request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, badRequest("invalid_request", "request body must be a JSON object")
	}
	// One pass over the top-level members: duplicates, and the fields
	// routing reads.
	req := &strategies.Request{Body: body}
	var perr *requestError
	var model gjson.Result
	top, _, _ := strings.Cut(modelKey, ".")
	foldedTop := foldKey(top)
	seen := make(map[string]struct{}, 16)
	root.ForEach(func(k, v gjson.Result) bool {
		// Keys are compared as Go's encoding/json matches them to
		// fields (and so do Ollama and other Go servers): ignoring
		// case, last one wins.
		folded := foldKey(k.Str)
		if _, ok := seen[folded]; ok {
			perr = badRequest("duplicate_key", "request body has the key %q more than once (keys differing only in case count as one)", truncate(k.Str, 64))
			return false
		}
		seen[folded] = struct{}{}
		if folded != k.Str && (folded == foldedTop || slices.Contains(readKeys, folded)) {
			// The gateway reads the key in lower case; a server that
			// ignores case reads this one.
			perr = ambiguousKey(k.Str, folded)
			return false
		}
		switch k.Str {
		case modelKey:
			model = v
		case "stream":
			if v.Type == gjson.Null {
				break
			}
			if !v.IsBool() {
				perr = badRequest("invalid_stream", "\"stream\" must be true or false")
				return false
			}
			req.Stream = v.Bool()
		case "max_tokens", "max_completion_tokens", "max_output_tokens", "n":
			n, err := tokenCount(k.Str, v)
			if err != nil {
				perr = err
				return false
			}
			if k.Str != "n" {
				req.MaxTokens = max(req.MaxTokens, n)
			}
		case "temperature", "top_p", "presence_penalty", "frequency_penalty":
			if v.Type == gjson.Number && (math.IsInf(v.Float(), 0) || math.Abs(v.Float()) > 1e6) {
				perr = badRequest("invalid_number", "%q is out of range", k.Str)
				return false
			}
		}
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if top != modelKey {
		if model, perr = nestedKey(root, modelKey); perr != nil {
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

// readKeys are the top-level keys the gateway reads besides the model
// key: those routing and limits read, and those of the prompt
// (strategies.Request.ReadPrompt). A key that differs from one of them
// only in case is refused: the gateway would not see it, a server that
// ignores case would.
var readKeys = []string{
	"stream", "max_tokens", "max_completion_tokens", "max_output_tokens", "n",
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
	i := 0
	for i < len(k) && k[i] < utf8.RuneSelf && (k[i] < 'A' || k[i] > 'Z') {
		i++
	}
	if i == len(k) {
		return k
	}
	b := make([]byte, i, len(k))
	copy(b, k[:i])
	for _, r := range k[i:] {
		b = utf8.AppendRune(b, foldRune(r))
	}
	return string(b)
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		return unicode.ToLower(r)
	}
	return unicode.ToLower(unicode.ToUpper(unicode.ToLower(r)))
}

// foldEqual reports whether foldKey(k) == folded, without allocating.
func foldEqual(k, folded string) bool {
	j := 0
	for _, r := range k {
		f, n := utf8.DecodeRuneInString(folded[j:])
		if n == 0 || f != foldRune(r) {
			return false
		}
		j += n
	}
	return j == len(folded)
}

// nestedKey finds the value at a dotted path of object keys (such as
// request.model), refusing a key on the way that its object holds twice
// or in another case. A path with gjson's special characters is read
// with gjson, unchecked.
func nestedKey(root gjson.Result, path string) (gjson.Result, *requestError) {
	if strings.ContainsAny(path, "\\*?#|@!") {
		return root.Get(path), nil
	}
	v := root
	for part := range strings.SplitSeq(path, ".") {
		if !v.IsObject() {
			return gjson.Result{}, nil
		}
		var found gjson.Result
		var perr *requestError
		folded := foldKey(part)
		v.ForEach(func(k, val gjson.Result) bool {
			if !foldEqual(k.Str, folded) {
				return true
			}
			switch {
			case found.Exists():
				perr = badRequest("duplicate_key", "request body has the key %q more than once (keys differing only in case count as one)", truncate(path, 64))
			case k.Str != part:
				perr = ambiguousKey(k.Str, part)
			default:
				found = val
				return true
			}
			return false
		})
		if perr != nil {
			return gjson.Result{}, perr
		}
		v = found
	}
	return v, nil
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

// checkDepth rejects bodies nested deeper than max without recursion, so
// a body of millions of '[' cannot exhaust the stack.
func checkDepth(body []byte, max int) *requestError {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			// Skip the string: find its closing quote, one not escaped
			// by an odd run of backslashes.
			for {
				j := bytes.IndexByte(body[i+1:], '"')
				if j < 0 {
					return nil // unterminated; the JSON check reports it
				}
				i += j + 1
				k := i - 1
				for k >= 0 && body[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '{', '[':
			depth++
			if depth > max {
				return badRequest("too_deep", "request body is nested deeper than %d levels", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// rewriteBody returns the body for one attempt: the model field set to
// model, each set of parameters applied in turn (a later set wins), and
// the client's `models` list removed when dropModels is set.
func rewriteBody(body []byte, modelKey, model string, dropModels bool, params ...map[string]json.RawMessage) ([]byte, error) {
	out, err := sjson.SetBytes(body, modelKey, model)
	if err != nil {
		return nil, err
	}
	for _, ps := range params {
		for _, path := range slices.Sorted(maps.Keys(ps)) {
			if out, err = sjson.SetRawBytes(out, path, ps[path]); err != nil {
				return nil, err
			}
		}
	}
	if dropModels {
		return sjson.DeleteBytes(out, "models")
	}
	return out, nil
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
