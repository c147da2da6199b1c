package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

var appendStringCases = []struct{ in, want string }{
	{"", `""`},
	{"plain text", `"plain text"`},
	{`say "hi"`, `"say \"hi\""`},
	{`C:\dir\file`, `"C:\\dir\\file"`},
	{"a\nb\rc\td", `"a\nb\rc\td"`},
	{"\x00\x01\x08\x0c\x1b\x1f", `"\u0000\u0001\u0008\u000c\u001b\u001f"`},
	{"\x7f", "\"\x7f\""},
	{"</script>&", `"</script>&"`},
	{"é漢字🙂", `"é漢字🙂"`},
	{"\xff", `"\ufffd"`},
	{"ok\xc3", `"ok\ufffd"`},                   // a truncated sequence
	{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},   // an encoded surrogate
	{"\xc0\xaf", `"\ufffd\ufffd"`},             // an overlong encoding
	{"\ufffd", "\"\ufffd\""},                   // a real U+FFFD stays as it is
	{"a\u2028b\u2029c", `"a\u2028b\u2029c"`},   // JavaScript line terminators
	{"\u2027\u202a", "\"\u2027\u202a\""},       // their neighbours are left alone
	{"x\"\xff\n\u2028", `"x\"\ufffd\n\u2028"`}, // all at once
	{strings.Repeat("é", 3), `"ééé"`},          // runs of multibyte text
	{"tail\\", `"tail\\"`},
}

func TestAppendString(t *testing.T) {
	for _, c := range appendStringCases {
		got := string(appendString([]byte("prefix:"), c.in))
		if got != "prefix:"+c.want {
			t.Errorf("appendString(%q) = %s, want %s", c.in, strings.TrimPrefix(got, "prefix:"), c.want)
		}
		checkAppendString(t, c.in)
	}
}

// TestAppendStringRandom round-trips random strings made of the bytes
// appendString treats specially through encoding/json.
func TestAppendStringRandom(t *testing.T) {
	pieces := []string{"a", "Z", " ", `"`, `\`, "/", "\n", "\r", "\t", "\x00", "\x1f", "\x7f",
		"é", "漢", "🙂", "\u2028", "\u2029", "\ufffd", "\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xf0\x9f"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var sb strings.Builder
		for range r.IntN(40) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		checkAppendString(t, sb.String())
	}
	for range 2000 { // raw random bytes
		b := make([]byte, r.IntN(64))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		checkAppendString(t, string(b))
	}
}

// checkAppendString checks that appendString(s) is a valid JSON string
// that decodes to what encoding/json makes of s (invalid bytes become
// U+FFFD), is valid UTF-8 and holds no control character, U+2028 or
// U+2029 unescaped.
func checkAppendString(t *testing.T, s string) {
	t.Helper()
	out := appendString(nil, s)
	if !json.Valid(out) {
		t.Fatalf("appendString(%q) = %q is not JSON", s, out)
	}
	if !utf8.Valid(out) {
		t.Fatalf("appendString(%q) = %q is not UTF-8", s, out)
	}
	for _, r := range string(out) {
		if r < 0x20 || r == '\u2028' || r == '\u2029' {
			t.Fatalf("appendString(%q) = %q holds %U unescaped", s, out, r)
		}
	}
	var got string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("appendString(%q) = %q: %v", s, out, err)
	}
	ref, _ := json.Marshal(s)
	var want string
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("appendString(%q) decodes to %q, encoding/json to %q", s, got, want)
	}
	if utf8.ValidString(s) && got != s {
		t.Fatalf("appendString(%q) decodes to %q", s, got)
	}
	if gjson.ParseBytes(out).Str != got {
		t.Fatalf("gjson reads appendString(%q) as %q, want %q", s, gjson.ParseBytes(out).Str, got)
	}
}

func TestEndpointClientAPI(t *testing.T) {
	for _, c := range []struct{ api, endpoint string }{
		{OpenAI, "/chat/completions"},
		{Anthropic, "/messages"},
	} {
		if got := Endpoint(c.api); got != c.endpoint {
			t.Errorf("Endpoint(%q) = %q, want %q", c.api, got, c.endpoint)
		}
		if got := ClientAPI(c.endpoint); got != c.api {
			t.Errorf("ClientAPI(%q) = %q, want %q", c.endpoint, got, c.api)
		}
	}
	for _, api := range []string{"", "gemini", "OpenAI"} {
		if got := Endpoint(api); got != "" {
			t.Errorf("Endpoint(%q) = %q, want none", api, got)
		}
	}
	for _, ep := range []string{"", "/completions", "/embeddings", "/responses", "/messages/count_tokens",
		"/v1/chat/completions", "chat/completions", "/chat/completions/"} {
		if got := ClientAPI(ep); got != "" {
			t.Errorf("ClientAPI(%q) = %q, want none", ep, got)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, c := range []struct {
		client, provider string
		want             bool
	}{
		{OpenAI, Anthropic, true},
		{Anthropic, OpenAI, true},
		{OpenAI, OpenAI, false}, // no translation needed
		{Anthropic, Anthropic, false},
		{"", "", false},
		{OpenAI, "gemini", false},
	} {
		if got := Lookup(c.client, c.provider) != nil; got != c.want {
			t.Errorf("Lookup(%q, %q) found = %v, want %v", c.client, c.provider, got, c.want)
		}
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	before := Lookup(OpenAI, Anthropic)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("registering a pair twice did not panic")
			}
		}()
		Register(OpenAI, Anthropic, chatToMessages{})
	}()
	if Lookup(OpenAI, Anthropic) != before {
		t.Error("a refused registration replaced the pair")
	}
}

// Bodies that are not JSON cannot be golden files; they must come back
// unchanged.
func TestErrorBodyNotJSON(t *testing.T) {
	bodies := []string{
		"",
		"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
		"upstream connect error or disconnect/reset before headers",
		`{"type":"error","error":{"type":"overloaded_error"`, // cut short
	}
	for _, api := range [][2]string{{OpenAI, Anthropic}, {Anthropic, OpenAI}} {
		_, x, err := Lookup(api[0], api[1]).Request([]byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bodies {
			if got := x.Error(502, []byte(b)); !bytes.Equal(got, []byte(b)) {
				t.Errorf("%s→%s: Error(%q) = %q, want it unchanged", api[0], api[1], b, got)
			}
		}
	}
}

func TestResponseMalformed(t *testing.T) {
	for _, api := range [][2]string{{OpenAI, Anthropic}, {Anthropic, OpenAI}} {
		_, x, err := Lookup(api[0], api[1]).Request([]byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{"", "not json", "[]", `"text"`, "{}", `{"choices":{}}`, `{"content":"hi"}`} {
			out, err := x.Response([]byte(b))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s→%s: Response(%q) = %s, %v; want an error wrapping ErrMalformed", api[0], api[1], b, out, err)
			}
		}
	}
}

func TestRequestErrorIsRequestError(t *testing.T) {
	_, _, err := Lookup(OpenAI, Anthropic).Request([]byte(`{"model":"m","n":3,"messages":[]}`), Options{})
	var re *RequestError
	if !errors.As(err, &re) || re.Msg == "" || re.Error() != re.Msg {
		t.Fatalf("Request error = %#v, want a *RequestError with a message", err)
	}
}

func TestDefaultMaxTokensOption(t *testing.T) {
	p := Lookup(OpenAI, Anthropic)
	for _, c := range []struct {
		req  string
		opt  Options
		want int64
	}{
		{`{"model":"m","messages":[]}`, Options{}, DefaultMaxTokens},
		{`{"model":"m","messages":[]}`, Options{DefaultMaxTokens: 8192}, 8192},
		{`{"model":"m","max_tokens":null,"messages":[]}`, Options{DefaultMaxTokens: 8192}, 8192},
		{`{"model":"m","max_tokens":100,"messages":[]}`, Options{DefaultMaxTokens: 8192}, 100},
		{`{"model":"m","max_tokens":100,"max_completion_tokens":200,"messages":[]}`, Options{}, 200},
		{`{"model":"m","max_tokens":100,"max_completion_tokens":null,"messages":[]}`, Options{}, 100},
	} {
		out, _, err := p.Request([]byte(c.req), c.opt)
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, "max_tokens").Int(); got != c.want {
			t.Errorf("Request(%s, %+v): max_tokens %d, want %d", c.req, c.opt, got, c.want)
		}
	}
}

func TestMaxTokensFieldOption(t *testing.T) {
	p := Lookup(Anthropic, OpenAI)
	req := []byte(`{"model":"m","max_tokens":300,"messages":[{"role":"user","content":"hi"}]}`)
	for _, c := range []struct {
		field, want, absent string
	}{
		{"", "max_tokens", "max_completion_tokens"},
		{"max_tokens", "max_tokens", "max_completion_tokens"},
		{"max_completion_tokens", "max_completion_tokens", "max_tokens"},
	} {
		out, _, err := p.Request(req, Options{MaxTokensField: c.field})
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, c.want).Int(); got != 300 {
			t.Errorf("field %q: %s = %d in %s, want 300", c.field, c.want, got, out)
		}
		if gjson.GetBytes(out, c.absent).Exists() {
			t.Errorf("field %q: %s present in %s", c.field, c.absent, out)
		}
	}
}

func TestNoStreamUsageOption(t *testing.T) {
	p := Lookup(Anthropic, OpenAI)
	req := []byte(`{"model":"m","max_tokens":300,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	for _, off := range []bool{false, true} {
		out, _, err := p.Request(req, Options{NoStreamUsage: off})
		if err != nil {
			t.Fatal(err)
		}
		if asked := gjson.GetBytes(out, "stream_options.include_usage").Bool(); asked == off || !gjson.GetBytes(out, "stream").Bool() {
			t.Errorf("NoStreamUsage %v: %s", off, out)
		}
	}
}

func TestErrorType(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{400, "invalid_request_error"},
		{401, "authentication_error"},
		{403, "permission_error"},
		{404, "not_found_error"},
		{405, "invalid_request_error"},
		{408, "invalid_request_error"},
		{413, "request_too_large"},
		{422, "invalid_request_error"},
		{429, "rate_limit_error"},
		{499, "invalid_request_error"},
		{500, "api_error"},
		{502, "api_error"},
		{503, "api_error"},
		{504, "api_error"},
		{529, "overloaded_error"}, // Anthropic's overloaded status
	} {
		if got := ErrorType(tc.status); got != tc.want {
			t.Errorf("ErrorType(%d) = %q, want %q", tc.status, got, tc.want)
		}
	}
}

// A message without a role, or a block without a type, is named as
// such in the refusal, not as a role or type "".
func TestRequestErrorNamesWhatIsMissing(t *testing.T) {
	for _, c := range []struct {
		from, to  string
		req, want string
	}{
		{OpenAI, Anthropic, `{"model":"m","messages":[{"content":"hi"}]}`, "a message without a role cannot be translated"},
		{Anthropic, OpenAI, `{"model":"m","max_tokens":5,"messages":[{"content":"hi"}]}`, "a message without a role cannot be translated"},
		{Anthropic, OpenAI, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"text":"hi"}]}]}`, "a content block without a type cannot be translated"},
	} {
		_, _, err := Lookup(c.from, c.to).Request([]byte(c.req), Options{})
		var re *RequestError
		if !errors.As(err, &re) || re.Msg != c.want {
			t.Errorf("%s→%s %s: error %v, want %q", c.from, c.to, c.req, err, c.want)
		}
	}
}
