package llmroute

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/tidwall/gjson"

	// Caddyfile.example runs llm_mock providers.
	_ "github.com/caddy-llm-route/llmroute/mock"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// TestCaddyfileAdaptToJSON adapts every testdata/caddyfile/*.caddyfiletest
// file (a Caddyfile, a line of dashes, the expected JSON) and compares the
// result, like Caddy's own caddytest/integration adapt tests.
func TestCaddyfileAdaptToJSON(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no test files in testdata/caddyfile")
	}
	winNewlines := regexp.MustCompile(`\r?\n`)
	for _, file := range files {
		filename := filepath.Base(file)
		t.Run(filename, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("reading %s: %v", filename, err)
			}
			input, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s has no ---------- separator", filename)
			}
			// (append newline to Caddyfile to match formatter expectations)
			input = strings.TrimSpace(input) + "\n"
			expected = winNewlines.ReplaceAllString(strings.TrimSpace(expected), "\n")
			if !caddytest.CompareAdapt(t, filename, input, "caddyfile", expected) {
				t.Errorf("failed to adapt %s", filename)
			}
		})
	}
}

// adaptSite adapts a site block holding one llm_route directive with the
// given body.
func adaptSite(body string) ([]byte, error) {
	cfg := ":8080 {\n\tllm_route {\n" + body + "\n\t}\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	return out, err
}

func TestCaddyfileErrors(t *testing.T) {
	const prov = "provider a https://a.example.com\n"
	for _, tc := range []struct {
		name    string
		body    string
		wantErr string
	}{
		{"unknown subdirective", "foo bar", "unrecognized subdirective: foo"},
		{"model_key without argument", "model_key", "wrong argument count"},
		{"enable_on_path_suffix without argument", "enable_on_path_suffix", "wrong argument count"},

		{"provider without name", "provider", "provider needs a name"},
		{"provider with a block but no name", "provider {\n\tformat openai\n}", "provider needs a name"},
		{"provider name on the next line", "provider\na https://a.example.com", "provider needs a name"},
		{"provider without upstream", "provider a\nmodel m a", "provider a: no upstream address"},
		{"provider with a block but no upstream", "provider a {\n\tformat anthropic\n}", "provider a: no upstream address"},
		{"unknown format", "provider a https://a.example.com {\n\tformat gemini\n}", `provider a: unknown format "gemini"`},
		{"format without argument", "provider a https://a.example.com {\n\tformat\n}", "provider a: format needs exactly one argument"},
		{"api_key with two arguments", "provider a https://a.example.com {\n\tapi_key k1 k2\n}", "provider a: api_key needs exactly one argument"},
		{"relative base_path", "provider a https://a.example.com {\n\tbase_path v1\n}", "provider a: base_path must start with '/'"},
		{"base_path with a block", "provider a https://a.example.com {\n\tbase_path /v1 {\n\t\tx\n\t}\n}", "provider a: base_path takes no block"},
		{"upstreams with different paths", "provider a https://a.example.com/v1 https://b.example.com/v2", `provider a: upstream URLs have different paths "/v1" and "/v2"`},
		{"header with one argument", "provider a https://a.example.com {\n\theader X-Foo\n}", "provider a: header needs a field and a value"},
		{"default_max_tokens zero", "provider a https://a.example.com {\n\tdefault_max_tokens 0\n}", `provider a: default_max_tokens must be a positive integer, not "0"`},
		{"default_max_tokens not a number", "provider a https://a.example.com {\n\tdefault_max_tokens lots\n}", `provider a: default_max_tokens must be a positive integer, not "lots"`},
		{"unknown max_tokens_field", "provider a https://a.example.com {\n\tmax_tokens_field n_predict\n}", `provider a: max_tokens_field must be max_tokens or max_completion_tokens, not "n_predict"`},
		{"forward_client_auth with argument", "provider a https://a.example.com {\n\tforward_client_auth yes\n}", "wrong argument count"},
		{"handle_response in a provider", "provider a https://a.example.com {\n\thandle_response {\n\t\trespond 200\n\t}\n}", "provider a: handle_response is not supported in a provider block"},
		{"bad reverse_proxy subdirective", "provider a https://a.example.com {\n\tlb_policy nonsense\n}", "provider a: "},
		{"bad upstream address", "provider a https://a.example.com/v1?x=1", "provider a"},

		{"model without name", prov + "model", "model needs a name"},
		{"model without provider", prov + "model m", "model m: no provider"},
		{"model with a block but no provider", prov + "model m {\n\tquality 0.5\n}", "model m: no provider"},
		{"model provider without argument", prov + "model m a {\n\tprovider\n}", "wrong argument count"},
		{"upstream_name without argument", prov + "model m a {\n\tupstream_name\n}", "wrong argument count"},
		{"price with one value", prov + "model m a {\n\tprice 1\n}", "model m: price needs an input and an output price"},
		{"price with three values", prov + "model m a {\n\tprice 1 2 3\n}", "model m: price needs an input and an output price"},
		{"price not a number", prov + "model m a {\n\tprice cheap 2\n}", "model m: invalid price cheap 2"},
		{"negative price", prov + "model m a {\n\tprice 1 -2\n}", "model m: invalid price 1 -2"},
		{"quality above 1", prov + "model m a {\n\tquality 1.5\n}", `model m: quality must be a number within 0..1, got "1.5"`},
		{"negative quality", prov + "model m a {\n\tquality -0.1\n}", "model m: quality must be a number within 0..1"},
		{"quality not a number", prov + "model m a {\n\tquality good\n}", "model m: quality must be a number within 0..1"},
		{"quality NaN", prov + "model m a {\n\tquality NaN\n}", "model m: quality must be a number within 0..1"},
		{"price NaN", prov + "model m a {\n\tprice NaN 1\n}", "model m: invalid price NaN 1"},
		{"price infinite", prov + "model m a {\n\tprice 1 Inf\n}", "model m: invalid price 1 Inf"},
		{"negative context", prov + "model m a {\n\tcontext -1\n}", `context: want a non-negative integer, got "-1"`},
		{"capabilities without argument", prov + "model m a {\n\tcapabilities\n}", "wrong argument count"},
		{"unknown model subdirective", prov + "model m a {\n\tcolor blue\n}", "model m: unrecognized subdirective: color"},

		{"route without name", prov + "model m a\nroute", "route needs a name"},
		{"route without targets", prov + "model m a\nroute r", "route r: no target"},
		{"route with only retry_on", prov + "model m a\nroute r {\n\tretry_on 429\n}", "route r: no target"},
		{"target without model", prov + "model m a\nroute r {\n\ttarget\n}", "route r: target needs a model and optionally a provider"},
		{"target with three arguments", prov + "model m a\nroute r {\n\ttarget m a b\n}", "route r: target needs a model and optionally a provider"},
		{"parameter without value", prov + "model m a\nroute r {\n\ttarget m {\n\t\ttemperature\n\t}\n}", "route r: target m: parameter temperature needs exactly one value"},
		{"parameter with two values", prov + "model m a\nroute r {\n\ttarget m {\n\t\tstop a b\n\t}\n}", "route r: target m: parameter stop needs exactly one value"},
		{"unknown route subdirective", prov + "model m a\nroute r m {\n\tcolour blue\n}", "route r: unrecognized subdirective: colour"},
		{"route retry_on bad status", prov + "model m a\nroute r m {\n\tretry_on 42\n}", `retry_on: invalid status "42"`},

		{"retry_on without argument", "retry_on", "wrong argument count"},
		{"retry_on status too high", "retry_on 429 600", `retry_on: invalid status "600" (want e.g. 429 or 5xx)`},
		{"retry_on status too low", "retry_on 99", `retry_on: invalid status "99"`},
		{"retry_on bad class", "retry_on 6xx", `retry_on: invalid status "6xx"`},
		{"retry_on not a number", "retry_on often", `retry_on: invalid status "often"`},
		{"max_body not a size", "max_body lots", `max_body: invalid size "lots"`},
		{"max_body zero", "max_body 0", `max_body: invalid size "0"`},
		{"max_body above 1 TiB", "max_body 2TiB", `max_body: invalid size "2TiB"`},
		{"max_body without argument", "max_body", "wrong argument count"},
		{"max_depth negative", "max_depth -1", `max_depth: want a non-negative integer, got "-1"`},
		{"max_attempts not a number", "max_attempts many", `max_attempts: want a non-negative integer, got "many"`},
		{"fail_threshold with two arguments", "fail_threshold 1 2", "wrong argument count"},
		{"bad duration", "cooldown soon", `cooldown: invalid duration "soon"`},
		{"zero duration", "first_byte_timeout 0s", `first_byte_timeout: invalid duration "0s"`},
		{"negative duration", "stream_idle_timeout -5s", `stream_idle_timeout: invalid duration "-5s"`},
		{"duration without argument", "cooldown", "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptSite(tc.body)
			if err == nil {
				t.Fatalf("expected an error containing %q, got none", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestCaddyfileDirectiveArguments checks that llm_route takes no
// arguments other than a matcher.
func TestCaddyfileDirectiveArguments(t *testing.T) {
	d := caddyfile.NewTestDispenser(`llm_route extra {
		provider a https://a.example.com
	}`)
	if err := new(Handler).UnmarshalCaddyfile(d); err == nil || !strings.Contains(err.Error(), "wrong argument count") {
		t.Fatalf("got %v, want an argument count error", err)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`llm_route {
		model_key request.model
		max_body 1MB
		max_depth 10
		max_attempts 3
		fail_threshold 2
		first_byte_timeout 1m
		stream_idle_timeout 1d
		cooldown 500ms
		retry_on 408 4XX 5xx
		enable_on_path_suffix /a /b
		enable_on_path_suffix *

		provider p1 https://api.example.com/openai/v1/ {
			format azure
			api_key {env.KEY}
			api_version 2025-01-01
			header X-A 1
			header X-A 2
			forward_client_auth
			lb_policy first
		}
		model m p1 {
			price 0 0.5
			quality 0
			capabilities tools
		}
		route r m {
			target m p1 {
				temperature 0.5
				name bob
				obj ` + "`" + `{"a":[1,2]}` + "`" + `
				flag false
				nothing null
				quoted "\"7\""
			}
		}
	}`)
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatalf("UnmarshalCaddyfile: %v", err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"model_key", h.ModelKey, "request.model"},
		{"max_body", h.MaxBody, int64(1_000_000)},
		{"max_depth", h.MaxDepth, 10},
		{"max_attempts", h.MaxAttempts, 3},
		{"fail_threshold", h.FailThreshold, 2},
		{"first_byte_timeout", h.FirstByteTimeout, caddy.Duration(time.Minute)},
		{"stream_idle_timeout", h.StreamIdleTimeout, caddy.Duration(24 * time.Hour)},
		{"cooldown", h.Cooldown, caddy.Duration(500 * time.Millisecond)},
		{"retry_on", h.RetryOn, []int{408, 4, 5}},
		{"enable_on_path_suffix", h.EnableOnPathSuffix, []string{"/a", "/b", "*"}},
		{"provider count", len(h.Providers), 1},
		{"model", *h.Models[0], Model{Name: "m", Providers: []string{"p1"}, OutputPrice: 0.5, Capabilities: []string{"tools"}}},
		{"route target count", len(h.Routes[0].Targets), 2},
		{"route first target", *h.Routes[0].Targets[0], Target{Model: "m"}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}

	p := h.Providers[0]
	if p.Name != "p1" || p.Format != "azure" || p.APIKey != "{env.KEY}" || p.APIVersion != "2025-01-01" ||
		p.BasePath != "/openai/v1" || !p.ForwardClientAuth {
		t.Errorf("provider = %+v", p)
	}
	if got := p.Headers.Values("X-A"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("provider header X-A = %q, want [1 2]", got)
	}
	proxy := gjson.ParseBytes(p.ProxyRaw)
	if proxy.Get("handler").Str != "reverse_proxy" {
		t.Errorf("proxy handler = %s", proxy.Get("handler").Raw)
	}
	if got := proxy.Get("upstreams.0.dial").Str; got != "api.example.com:443" {
		t.Errorf("proxy upstream = %q, want api.example.com:443 (the path goes to base_path)", got)
	}
	if got := proxy.Get("load_balancing.selection_policy.policy").Str; got != "first" {
		t.Errorf("lb_policy not passed to reverse_proxy: %s", p.ProxyRaw)
	}
	for _, own := range []string{"format", "api_key", "api_version", "forward_client_auth", "X-A"} {
		if strings.Contains(string(p.ProxyRaw), own) {
			t.Errorf("provider subdirective %q leaked into the proxy config: %s", own, p.ProxyRaw)
		}
	}

	target := h.Routes[0].Targets[1]
	if target.Model != "m" || target.Provider != "p1" {
		t.Errorf("target = %+v", target)
	}
	wantParams := map[string]string{
		"temperature": `0.5`,
		"name":        `"bob"`,
		"obj":         `{"a":[1,2]}`,
		"flag":        `false`,
		"nothing":     `null`,
		"quoted":      `"7"`,
	}
	if len(target.Params) != len(wantParams) {
		t.Errorf("params = %v, want %v", target.Params, wantParams)
	}
	for k, want := range wantParams {
		if got := string(target.Params[k]); got != want {
			t.Errorf("param %s = %s, want %s", k, got, want)
		}
	}
}

// TestCaddyfileProviderArgumentsNamedLikeSubdirectives checks that only
// the first token of a line in a provider block is taken as one of the
// provider's own subdirectives: an argument of a reverse_proxy
// subdirective that happens to read "header", "format" or "api_key" must
// be left to reverse_proxy.
func TestCaddyfileProviderArgumentsNamedLikeSubdirectives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		block  string
		path   string // gjson path in the provider's proxy config
		want   string
		notSet func(p *upstreams.Provider) bool
	}{
		{
			name:  "lb_policy header",
			block: "lb_policy header X-User-Id",
			path:  "load_balancing.selection_policy.field",
			want:  "X-User-Id",
			notSet: func(p *upstreams.Provider) bool {
				return p.Headers == nil
			},
		},
		{
			name:  "lb_policy query api_key",
			block: "lb_policy query api_key",
			path:  "load_balancing.selection_policy.key",
			want:  "api_key",
			notSet: func(p *upstreams.Provider) bool {
				return p.APIKey == ""
			},
		},
		{
			name:  "header_up with a value named format",
			block: "header_up X-Mode format",
			path:  "headers.request.set.X-Mode.0",
			want:  "format",
			notSet: func(p *upstreams.Provider) bool {
				return p.Format == ""
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser("provider a https://a.example.com https://b.example.com {\n" + tc.block + "\n}")
			d.Next() // the provider token, as in the handler's block
			p := new(upstreams.Provider)
			if err := p.UnmarshalCaddyfile(d); err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			if got := gjson.GetBytes(p.ProxyRaw, tc.path).String(); got != tc.want {
				t.Errorf("proxy %s = %q, want %q; proxy: %s", tc.path, got, tc.want, p.ProxyRaw)
			}
			if !tc.notSet(p) {
				t.Errorf("a reverse_proxy argument was taken as a provider setting: %+v", p)
			}
		})
	}
}

// TestCaddyfileExample adapts Caddyfile.example and provisions its
// gateway handler.
func TestCaddyfileExample(t *testing.T) {
	data, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	handler := findHandler(cfg, "llm_route")
	if handler == nil {
		t.Fatalf("no llm_route handler in the adapted example:\n%s", out)
	}
	// "handler" is the module's inline key, not a field of Handler.
	delete(handler, "handler")
	raw, err := json.Marshal(handler)
	if err != nil {
		t.Fatal(err)
	}
	h := mustLoadHandler(t, string(raw))
	if len(h.Providers) == 0 || len(h.Models) == 0 || len(h.Routes) == 0 {
		t.Errorf("example gateway has no providers, models or routes: %s", raw)
	}
}

// findHandler returns the first JSON object below v whose "handler" is
// name.
func findHandler(v any, name string) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == name {
			return v
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if h := findHandler(v[k], name); h != nil {
				return h
			}
		}
	case []any:
		for _, e := range v {
			if h := findHandler(e, name); h != nil {
				return h
			}
		}
	}
	return nil
}
