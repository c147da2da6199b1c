package llmroute

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Request bodies of every API shape llm_route routes.
const (
	chatBody = `{
  "model": "gpt-4o",
  "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
  ],
  "stream": true,
  "stream_options": {"include_usage": true},
  "max_tokens": 100,
  "temperature": 0.7,
  "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}]
}`
	completionBody  = `{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,"n":2,"temperature":0}`
	embeddingBody   = `{"model":"text-embedding-3-small","input":"The food was delicious","encoding_format":"float"}`
	embeddingsBody  = `{"input":["first","second",[1,2,3]],"model":"text-embedding-3-large","dimensions":256}`
	responsesBody   = `{"model":"gpt-4.1","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"hello"}]}],"max_output_tokens":500,"stream":false,"reasoning":{"effort":"low"}}`
	anthropicBody   = `{"model":"claude-sonnet-4-5","max_tokens":1024,"system":[{"type":"text","text":"You are a helpful assistant.","cache_control":{"type":"ephemeral"}}],"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"text","text":"What is in this image?"}]}],"stream":true}`
	completionsBody = `{"model":"o3","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":2048}`
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		modelKey  string
		model     string
		stream    bool
		maxTokens int64
	}{
		{name: "chat completions", body: chatBody, model: "gpt-4o", stream: true, maxTokens: 100},
		{name: "chat completions with max_completion_tokens", body: completionsBody, model: "o3", maxTokens: 2048},
		{name: "completions", body: completionBody, model: "gpt-3.5-turbo-instruct", maxTokens: 7},
		{name: "embeddings with a string input", body: embeddingBody, model: "text-embedding-3-small"},
		{name: "embeddings with an array input", body: embeddingsBody, model: "text-embedding-3-large"},
		{name: "responses", body: responsesBody, model: "gpt-4.1", maxTokens: 500},
		{name: "anthropic messages", body: anthropicBody, model: "claude-sonnet-4-5", stream: true, maxTokens: 1024},
		{name: "stream false", body: `{"model":"m","stream":false}`, model: "m"},
		{name: "null max_tokens", body: `{"model":"m","max_tokens":null}`, model: "m"},
		{name: "zero max_tokens", body: `{"model":"m","max_tokens":0}`, model: "m"},
		{name: "max_tokens in exponent form", body: `{"model":"m","max_tokens":1e3}`, model: "m", maxTokens: 1000},
		{name: "max_tokens at the limit", body: `{"model":"m","max_tokens":100000000}`, model: "m", maxTokens: 100_000_000},
		{name: "zero max_tokens falls through", body: `{"model":"m","max_tokens":0,"max_completion_tokens":50}`, model: "m", maxTokens: 50},
		{name: "n is not a token cap", body: `{"model":"m","n":3}`, model: "m"},
		{name: "provider-qualified model", body: `{"model":"openai/gpt-4o"}`, model: "openai/gpt-4o"},
		{name: "unicode model", body: `{"model":"mod\u00e8le"}`, model: "modèle"},
		{name: "nested model key", body: `{"request":{"model":"m2"},"model":"outer"}`, modelKey: "request.model", model: "m2"},
		{name: "model key with escaped dot", body: `{"a.b":"m3"}`, modelKey: `a\.b`, model: "m3"},
		{name: "duplicate keys below the top level", body: `{"model":"m","messages":[{"role":"user","role":"user"}]}`, model: "m"},
		{name: "whitespace around the body", body: " \n\t{\"model\":\"m\"}\r\n ", model: "m"},
		{name: "string of brackets", body: `{"model":"m","x":"` + strings.Repeat("[", 1000) + `"}`, model: "m"},
		{name: "escaped quotes before brackets", body: `{"model":"m","x":"\"` + strings.Repeat("[{", 500) + `\""}`, model: "m"},
		{name: "a model key in upper case", body: `{"Model":"m5"}`, modelKey: "Model", model: "m5"},
		{name: "unread keys in any case", body: `{"model":"m","generationConfig":{},"X-Custom":1}`, model: "m"},
		{name: "nested model key next to others", body: `{"request":{"Other":1,"model":"m4"}}`, modelKey: "request.model", model: "m4"},
		{name: "temperature in range", body: `{"model":"m","temperature":2,"top_p":1e6}`, model: "m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.modelKey
			if key == "" {
				key = "model"
			}
			body := []byte(tc.body)
			req, rerr := parseRequest(body, key, defaultMaxDepth)
			if rerr != nil {
				t.Fatalf("parseRequest: %d %s: %s", rerr.status, rerr.code, rerr.msg)
			}
			if req.Model != tc.model {
				t.Errorf("Model = %q, want %q", req.Model, tc.model)
			}
			if req.Stream != tc.stream {
				t.Errorf("Stream = %v, want %v", req.Stream, tc.stream)
			}
			if req.MaxTokens != tc.maxTokens {
				t.Errorf("MaxTokens = %d, want %d", req.MaxTokens, tc.maxTokens)
			}
			if !bytes.Equal(req.Body, []byte(tc.body)) {
				t.Error("Body differs from the input")
			}
			if req.Endpoint != "" {
				t.Errorf("Endpoint = %q; parseRequest must leave it to the handler", req.Endpoint)
			}
		})
	}
}

func TestParseRequestRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		modelKey string
		code     string
	}{
		{"empty body", ``, "", "invalid_json"},
		{"whitespace only", " \n", "", "invalid_json"},
		{"truncated object", `{"model":"m"`, "", "invalid_json"},
		{"trailing garbage", `{"model":"m"} x`, "", "invalid_json"},
		{"two objects", `{"model":"m"}{"model":"n"}`, "", "invalid_json"},
		{"single quotes", `{'model':'m'}`, "", "invalid_json"},
		{"trailing comma", `{"model":"m",}`, "", "invalid_json"},
		{"NaN", `{"model":"m","temperature":NaN}`, "", "invalid_json"},
		{"invalid escape", `{"model":"m\x"}`, "", "invalid_json"},
		{"control character in a string", "{\"model\":\"m\x01\"}", "", "invalid_json"},
		{"array root", `[{"model":"m"}]`, "", "invalid_request"},
		{"string root", `"model"`, "", "invalid_request"},
		{"number root", `42`, "", "invalid_request"},
		{"null root", `null`, "", "invalid_request"},
		{"bool root", `true`, "", "invalid_request"},
		{"duplicate model", `{"model":"cheap","messages":[],"model":"expensive"}`, "", "duplicate_key"},
		{"duplicate model, one escaped", `{"model":"cheap","mod\u0065l":"expensive"}`, "", "duplicate_key"},
		{"duplicate stream", `{"model":"m","stream":false,"stream":true}`, "", "duplicate_key"},
		{"duplicate max_tokens", `{"model":"m","max_tokens":1,"max_tokens":100000}`, "", "duplicate_key"},
		{"duplicate other key", `{"model":"m","messages":[],"messages":[]}`, "", "duplicate_key"},
		{"duplicate nested model key", `{"request":{"model":"cheap","model":"expensive"}}`, "request.model", "duplicate_key"},
		// Go's encoding/json matches keys ignoring case, last one wins.
		{"model in another case", `{"model":"cheap","MODEL":"expensive"}`, "", "duplicate_key"},
		{"model in another case first", `{"Model":"expensive","model":"cheap"}`, "", "ambiguous_key"},
		{"stream with a long s", `{"model":"m","stream":false,"ſtream":true}`, "", "duplicate_key"},
		{"max_tokens with a Kelvin sign", `{"model":"m","max_tokens":1,"max_toKens":100000}`, "", "duplicate_key"},
		{"other key in another case", `{"model":"m","messages":[],"Messages":[]}`, "", "duplicate_key"},
		{"nested model key in another case", `{"request":{"model":"cheap","MODEL":"expensive"}}`, "request.model", "duplicate_key"},
		{"nested parent in another case", `{"request":{"model":"cheap"},"Request":{"model":"expensive"}}`, "request.model", "duplicate_key"},
		{"lone model in another case", `{"MODEL":"expensive"}`, "", "ambiguous_key"},
		{"lone max_tokens in another case", `{"model":"m","Max_Tokens":100000}`, "", "ambiguous_key"},
		{"lone messages in another case", `{"model":"m","MESSAGES":[]}`, "", "ambiguous_key"},
		{"lone nested model in another case", `{"request":{"Model":"x"}}`, "request.model", "ambiguous_key"},
		{"model missing", `{"messages":[]}`, "", "missing_model"},
		{"nested model missing", `{"model":"m"}`, "request.model", "missing_model"},
		{"model is a number", `{"model":4}`, "", "invalid_model"},
		{"model is null", `{"model":null}`, "", "invalid_model"},
		{"model is an array", `{"model":["m"]}`, "", "invalid_model"},
		{"model is an object", `{"model":{"name":"m"}}`, "", "invalid_model"},
		{"model is empty", `{"model":""}`, "", "invalid_model"},
		{"model is a bool", `{"model":true}`, "", "invalid_model"},
		{"stream is a string", `{"model":"m","stream":"true"}`, "", "invalid_stream"},
		{"stream is a number", `{"model":"m","stream":1}`, "", "invalid_stream"},
		{"max_tokens overflows", `{"model":"m","max_tokens":1e400}`, "", "invalid_number"},
		{"max_tokens negative", `{"model":"m","max_tokens":-1}`, "", "invalid_number"},
		{"max_tokens fractional", `{"model":"m","max_tokens":10.5}`, "", "invalid_number"},
		{"max_tokens string", `{"model":"m","max_tokens":"100"}`, "", "invalid_number"},
		{"max_tokens bool", `{"model":"m","max_tokens":true}`, "", "invalid_number"},
		{"max_tokens above the limit", `{"model":"m","max_tokens":100000001}`, "", "invalid_number"},
		{"max_completion_tokens negative", `{"model":"m","max_completion_tokens":-5}`, "", "invalid_number"},
		{"max_output_tokens huge", `{"model":"m","max_output_tokens":9223372036854775807}`, "", "invalid_number"},
		{"huge n", `{"model":"m","n":1e9}`, "", "invalid_number"},
		{"n overflows", `{"model":"m","n":1e309}`, "", "invalid_number"},
		{"temperature overflows", `{"model":"m","temperature":1e400}`, "", "invalid_number"},
		{"temperature out of range", `{"model":"m","temperature":-1e7}`, "", "invalid_number"},
		{"top_p out of range", `{"model":"m","top_p":1e7}`, "", "invalid_number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.modelKey
			if key == "" {
				key = "model"
			}
			req, rerr := parseRequest([]byte(tc.body), key, defaultMaxDepth)
			if rerr == nil {
				t.Fatalf("accepted with model %q; want %s", req.Model, tc.code)
			}
			if rerr.status != 400 || rerr.code != tc.code {
				t.Errorf("got %d %s (%s), want 400 %s", rerr.status, rerr.code, rerr.msg, tc.code)
			}
			if rerr.msg == "" || rerr.Error() != rerr.msg {
				t.Errorf("message %q", rerr.msg)
			}
		})
	}
}

// TestFoldKey: keys foldKey makes equal are the keys Go's encoding/json
// reads into the same field.
func TestFoldKey(t *testing.T) {
	keys := []string{
		"model", "MODEL", "Model", "mOdEl", "stream", "\u017ftream", "STREA\u017f", "max_tokens",
		"max_to\u212aens", "MAX_TO\u212aENS", "modèle", "MODÈLE", "x", "\u00df", "\u1e9e",
	}
	for _, key := range keys {
		for _, field := range keys {
			same := foldKey(key) == foldKey(field)
			if same != foldEqual([]byte(key), foldKey(field)) {
				t.Errorf("foldEqual(%q, %q) disagrees with foldKey", key, field)
			}
			if same != (foldHash([]byte(key)) == foldHash([]byte(field))) {
				t.Errorf("foldHash(%q) == foldHash(%q) disagrees with foldKey", key, field)
			}
			if matched := jsonMatches(t, key, field); same != matched {
				t.Errorf("foldKey(%q) == foldKey(%q) is %v; encoding/json matches them: %v", key, field, same, matched)
			}
		}
	}
}

// jsonMatches reports whether encoding/json reads the key into a field
// named name.
func jsonMatches(t *testing.T, key, name string) bool {
	t.Helper()
	typ := reflect.StructOf([]reflect.StructField{{
		Name: "F", Type: reflect.TypeFor[*int](), Tag: reflect.StructTag(`json:"` + name + `"`),
	}})
	v := reflect.New(typ)
	b, _ := json.Marshal(map[string]int{key: 1})
	if err := json.Unmarshal(b, v.Interface()); err != nil {
		t.Fatal(err)
	}
	return !v.Elem().Field(0).IsNil()
}

// TestParseRequestNullStream: the OpenAI API documents stream as
// "boolean or null"; null means the default, like a null max_tokens does.
func TestParseRequestNullStream(t *testing.T) {
	req, rerr := parseRequest([]byte(`{"model":"m","stream":null}`), "model", defaultMaxDepth)
	if rerr != nil {
		t.Fatalf("rejected: %d %s: %s", rerr.status, rerr.code, rerr.msg)
	}
	if req.Stream {
		t.Error("Stream = true, want false")
	}
}

func TestParseRequestDepth(t *testing.T) {
	nested := func(depth int) string {
		// depth levels including the root object
		return `{"model":"m","x":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
	}
	for _, tc := range []struct {
		name     string
		body     string
		maxDepth int
		ok       bool
	}{
		{"at the limit", nested(64), 64, true},
		{"one over the limit", nested(65), 64, false},
		{"small limit", nested(3), 3, true},
		{"small limit exceeded", nested(4), 3, false},
		{"objects count too", `{"model":"m","a":{"b":{"c":{}}}}`, 3, false},
		{"objects at the limit", `{"model":"m","a":{"b":{"c":1}}}`, 3, true},
		{"brackets in strings do not count", `{"model":"m","x":"` + strings.Repeat("[", 1000) + `"}`, 2, true},
		{"braces in keys do not count", `{"model":"m","{{{{":1}`, 1, true},
		{"escaped quote keeps the string open", `{"model":"m","x":"\"[[[[[[\"","y":[1]}`, 2, true},
		{"escaped backslash closes the string", `{"model":"m","x":"\\","y":[1]}`, 2, true},
		{"escaped backslash, then too deep", `{"model":"m","x":"\\","y":[[1]]}`, 2, false},
		{"unicode escape", `{"model":"m","x":"\u005b\u005b\u005b","y":[1]}`, 2, true},
		{"closing brackets in strings do not lower the depth", `{"model":"m","x":"]]]]]]]]","y":[[1]]}`, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rerr := parseRequest([]byte(tc.body), "model", tc.maxDepth)
			switch {
			case tc.ok && rerr != nil:
				t.Fatalf("rejected: %s %s", rerr.code, rerr.msg)
			case !tc.ok && rerr == nil:
				t.Fatal("accepted, want too_deep")
			case !tc.ok && (rerr.code != "too_deep" || rerr.status != 400):
				t.Fatalf("got %d %s, want 400 too_deep", rerr.status, rerr.code)
			}
		})
	}
}

// TestParseRequestDeepBody feeds 20 MB of '[' (and of '{"a":'): it must
// be rejected quickly, without recursion deep enough to exhaust the stack.
func TestParseRequestDeepBody(t *testing.T) {
	const size = 20 << 20
	for name, body := range map[string][]byte{
		"brackets":         bytes.Repeat([]byte("["), size),
		"objects":          bytes.Repeat([]byte(`{"a":`), size/5),
		"model then array": append([]byte(`{"model":"m","x":`), bytes.Repeat([]byte("["), size)...),
		"closing first":    append(bytes.Repeat([]byte("]"), 100), bytes.Repeat([]byte("["), size)...),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, rerr := parseRequest(body, "model", defaultMaxDepth)
			if rerr == nil || rerr.status != 400 {
				t.Fatalf("got %v, want a 400", rerr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestSafePath(t *testing.T) {
	for path, want := range map[string]bool{
		"/v1/chat/completions": true,
		"/v1/custom/thing":     true,
		"/":                    true,
		"/v1//x":               true,
		"/v1/a.b/c..d":         true,
		"/v1/../admin":         false,
		"/v1/./x":              false,
		"/..":                  false,
		"/v1/..;/admin":        false,
		"/v1/.hidden":          false,
		"/v1/x/..":             false,
		"/v1/%2e%2e/admin":     false, // decoded once already: a '%' left is a second encoding
		"*":                    false,
		"v1/chat/completions":  false,
		"/v1/..\\admin":        false,
		"/v1/a\\b":             false,
	} {
		if got := safePath(path); got != want {
			t.Errorf("safePath(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestEndpointFor(t *testing.T) {
	for _, tc := range []struct {
		path, matched, want string
	}{
		{"/v1/chat/completions", "/completions", "/chat/completions"},
		{"/chat/completions", "/completions", "/chat/completions"},
		{"/openai/v1/chat/completions", "/completions", "/chat/completions"},
		{"/openai/deployments/x/chat/completions", "*", "/chat/completions"},
		{"/v1/completions", "/completions", "/completions"},
		{"/v1/embeddings", "/embeddings", "/embeddings"},
		{"/v1/responses", "/responses", "/responses"},
		{"/v1/messages", "/messages", "/messages"},
		{"/anthropic/v1/messages", "*", "/messages"},
		{"/v1/rerank", "/rerank", "/rerank"},
		{"/v1/images/generations", "/images/generations", "/images/generations"},
		{"/v1/audio/speech", "/audio/speech", "/audio/speech"},
		{"/v1/fine_tuning/jobs", "/fine_tuning/jobs", "/fine_tuning/jobs"},
		{"/v1/moderations", "/moderations", "/moderations"},
		{"/gateway/v2/generate", "/v2/generate", "/v2/generate"},
		{"/v1/custom/thing", "*", "/custom/thing"},
		{"/custom/thing", "*", "/custom/thing"},
		{"/api/v1/custom", "*", "/api/v1/custom"},
		{"/v1/moderations", "", "/moderations"},
		{"/", "*", "/"},
	} {
		if got := endpointFor(tc.path, tc.matched); got != tc.want {
			t.Errorf("endpointFor(%q, %q) = %q, want %q", tc.path, tc.matched, got, tc.want)
		}
	}
}

func TestRewriteBody(t *testing.T) {
	body := []byte(`{
	"model" : "alias",
	"messages": [{"role": "user", "content": "h\u00e9llo \"world\""}],
	"temperature": 1,
	"metadata": {"a": 1},
	"tools": [{"type": "function"}]
}`)
	orig := bytes.Clone(body)
	params := map[string]json.RawMessage{
		"temperature":     json.RawMessage(`0.2`),
		"max_tokens":      json.RawMessage(`256`),
		"reasoning":       json.RawMessage(`{"effort":"low"}`),
		"stop":            json.RawMessage(`["\n\n","END"]`),
		"logprobs":        json.RawMessage(`true`),
		"seed":            json.RawMessage(`null`),
		"user":            json.RawMessage(`"bob \"b\""`),
		"metadata.tag":    json.RawMessage(`"x"`),
		"tools.0.strict":  json.RawMessage(`false`),
		"response_format": json.RawMessage(`{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}}`),
	}
	rewritten, err := rewriteBody(body, "model", "gpt-4o-2024-08-06", false, params)
	if err != nil {
		t.Fatal(err)
	}
	out := sentBytes(t, &rewritten)
	if !bytes.Equal(body, orig) {
		t.Fatal("rewriteBody modified its input")
	}
	if !gjson.ValidBytes(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	if got := gjson.GetBytes(out, "model").Str; got != "gpt-4o-2024-08-06" {
		t.Errorf("model = %q", got)
	}
	for path, want := range params {
		if got := gjson.GetBytes(out, path).Raw; got != string(want) {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
	for _, path := range []string{"messages", "metadata.a", "tools.0.type"} {
		if got, want := gjson.GetBytes(out, path).Raw, gjson.GetBytes(body, path).Raw; got != want {
			t.Errorf("%s = %s, want it unchanged: %s", path, got, want)
		}
	}
	var n int
	gjson.ParseBytes(out).ForEach(func(gjson.Result, gjson.Result) bool { n++; return true })
	if want := 5 + 7; n != want { // 5 original keys + 7 new top-level ones
		t.Errorf("%d top-level keys, want %d: %s", n, want, out)
	}
}

// TestRewriteBodyByteIdentical checks that only the model value changes:
// the rest of the body, formatting included, is passed on as is.
func TestRewriteBodyByteIdentical(t *testing.T) {
	for _, tc := range []struct {
		name, body, key, model, want string
	}{
		{
			name:  "top-level model",
			body:  "{ \"messages\" :[ {\"role\":\"user\",\"content\":\"model\"} ],\n\t\"model\":\t\"alias\" , \"x\": 1e3 }",
			key:   "model",
			model: "real-model",
			want:  "{ \"messages\" :[ {\"role\":\"user\",\"content\":\"model\"} ],\n\t\"model\":\t\"real-model\" , \"x\": 1e3 }",
		},
		{
			name:  "same model",
			body:  `{"model":"same","a":[1, 2 ,3]}`,
			key:   "model",
			model: "same",
			want:  `{"model":"same","a":[1, 2 ,3]}`,
		},
		{
			name:  "nested model key",
			body:  `{"model":"outer","request":{ "model" : "alias", "n":1 }}`,
			key:   "request.model",
			model: "inner",
			want:  `{"model":"outer","request":{ "model" : "inner", "n":1 }}`,
		},
		{
			name:  "model key inside an array",
			body:  `{"batch":[{"model":"a"},{"model":"b"}]}`,
			key:   "batch.1.model",
			model: "c",
			want:  `{"batch":[{"model":"a"},{"model":"c"}]}`,
		},
		{
			name:  "model needing escapes",
			body:  `{"model":"a"}`,
			key:   "model",
			model: `we"ird\name`,
			want:  `{"model":"we\"ird\\name"}`,
		},
		{
			name:  "missing nested model key is created",
			body:  `{"x":1}`,
			key:   "request.model",
			model: "m",
			want:  `{"x":1,"request":{"model":"m"}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rewritten, err := rewriteBody([]byte(tc.body), tc.key, tc.model, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			out := sentBytes(t, &rewritten)
			if string(out) != tc.want {
				t.Errorf("got  %s\nwant %s", out, tc.want)
			}
		})
	}
}

func TestRewriteBodyParamsOrder(t *testing.T) {
	// "metadata" replaces the object, then "metadata.tag" adds to it; the
	// order must not depend on map iteration.
	params := map[string]json.RawMessage{
		"metadata.tag": json.RawMessage(`"t"`),
		"metadata":     json.RawMessage(`{"team":"x"}`),
	}
	for range 20 {
		rewritten, err := rewriteBody([]byte(`{"model":"a","metadata":{"old":true}}`), "model", "b", false, params)
		if err != nil {
			t.Fatal(err)
		}
		out := sentBytes(t, &rewritten)
		if got := gjson.GetBytes(out, "metadata").Raw; got != `{"team":"x","tag":"t"}` {
			t.Fatalf("metadata = %s", got)
		}
	}
}

func TestRewriteBodyErrors(t *testing.T) {
	if _, err := rewriteBody([]byte(`{"model":"a"}`), "", "b", false, nil); err == nil {
		t.Error("empty model key accepted")
	}
	if _, err := rewriteBody([]byte(`{"model":"a"}`), "model", "b", false, map[string]json.RawMessage{"": json.RawMessage(`1`)}); err == nil {
		t.Error("empty parameter path accepted")
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"", 0, ""},
		// Multi-byte names are cut before the character that does not fit.
		{"modèle", 4, "mod…"},  // è is 2 bytes: 3..4
		{"modèle", 5, "modè…"}, // cut right after it
		{"模型名", 4, "模…"},       // 3 bytes each
		{"模型名", 5, "模…"},
		{"模型名", 6, "模型…"},
		{"a😀b", 4, "a…"}, // 4 bytes
		{"😀😀", 3, "…"},
		// Not UTF-8: cut at n.
		{"\x80\x80\x80\x80\x80", 4, "\x80\x80\x80\x80…"},
	} {
		got := truncate(tc.s, tc.n)
		if got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
		if utf8.ValidString(tc.s) && !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q is not valid UTF-8", tc.s, tc.n, got)
		}
	}
}

// TestClientModelsNotAnArray: with client_models on, a `models` field
// that is not an array (a string, an object, null) is refused with 400
// invalid_models in the client's API shape, as a list holding a
// non-string is, rather than dropped while the request goes on. An
// empty array lists no fallback and is served.
func TestClientModelsNotAnArray(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, a, a, `"client_models": true,`)
	for _, tc := range []struct {
		name, path, models string
		status             int
	}{
		{"string", "/v1/chat/completions", `"m"`, 400},
		{"object", "/v1/chat/completions", `{}`, 400},
		{"null", "/v1/chat/completions", `null`, 400},
		{"number", "/v1/chat/completions", `1`, 400},
		{"string on messages", "/v1/messages", `"m"`, 400},
		{"array of a number", "/v1/chat/completions", `[1]`, 400},
		{"empty array", "/v1/chat/completions", `[]`, 200},
		{"array", "/v1/chat/completions", `["claude"]`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.requests()
			body := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"models": ` + tc.models + `}`
			rec, _, _, _ := serveGateway(t, h, "POST", tc.path, body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status == 200 {
				if a.requests() != before+1 || strings.Contains(a.body(before), `"models"`) {
					t.Errorf("upstream requests %d (was %d); the list reached it: %s", a.requests(), before, a.body(before))
				}
				return
			}
			b := rec.Body.Bytes()
			if got := gjson.GetBytes(b, "error.code").Str; got != "invalid_models" {
				t.Errorf("code %q, want invalid_models: %s", got, b)
			}
			if anth := gjson.GetBytes(b, "type").Str == "error"; anth != (tc.path == "/v1/messages") {
				t.Errorf("anthropic shape %v on %s: %s", anth, tc.path, b)
			}
			if a.requests() != before {
				t.Error("the request went upstream")
			}
		})
	}
}
