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
	"github.com/caddy-llm-route/llmroute/strategies"
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

// loadSite adapts a site block holding one llm_route directive with the
// given body, then provisions and validates the handler, as `caddy
// validate` does (`caddy adapt` only parses). It returns the first error.
func loadSite(t *testing.T, body string) (*Handler, error) {
	t.Helper()
	out, err := adaptSite(body)
	if err != nil {
		return nil, err
	}
	return loadHandler(t, adaptedHandler(t, out))
}

// adaptedHandler returns the JSON of the first llm_route handler in an
// adapted config.
func adaptedHandler(t *testing.T, adapted []byte) string {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	handler := findHandler(cfg, "llm_route")
	if handler == nil {
		t.Fatalf("no llm_route handler in the adapted config:\n%s", adapted)
	}
	// "handler" is the module's inline key, not a field of Handler.
	delete(handler, "handler")
	raw, err := json.Marshal(handler)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestCaddyfileErrors checks the errors of Caddyfile syntax, found while
// adapting, and the value errors that only the Caddyfile can make (a 0
// that JSON would read as the default). Values are judged by Validate:
// see TestValueErrorsCaddyfileAndJSON.
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

		// An unknown subdirective says where it belongs, or what it may be.
		{"handler option in a provider", "provider a https://a.example.com {\n\tcooldown 5s\n}", "provider a: unrecognized subdirective: cooldown (cooldown belongs in the llm_route block itself), at Caddyfile:4"},
		{"route option in a model", prov + "model m a {\n\tretry_on 500\n}", "model m: unrecognized subdirective: retry_on (retry_on belongs in the llm_route block itself or a route block)"},
		{"model option at the top", "price 1 2", "unrecognized subdirective: price (price belongs in a model block)"},
		{"limit at the top", "rpm 5", "unrecognized subdirective: rpm (rpm is a limit: it belongs in a provider, model, route or key block)"},
		{"misspelled option", "cooldwn 5s", "unrecognized subdirective: cooldwn (did you mean cooldown?)"},
		{"misspelled route option", prov + "model m a\nroute r m {\n\tstratgy cheapest\n}", "route r: unrecognized subdirective: stratgy (did you mean strategy?)"},
		{"key option in a route", prov + "model m a\nroute r m {\n\tsecret x\n}", "route r: unrecognized subdirective: secret (secret belongs in a key block)"},
		{"unknown option, no hint", "frobnicate 1", "unrecognized subdirective: frobnicate, at"},
		{"provider without name", "provider", "provider needs a name"},
		{"provider with a block but no name", "provider {\n\tformat openai\n}", "provider needs a name"},
		{"provider name on the next line", "provider\na https://a.example.com", "provider needs a name"},
		{"format without argument", "provider a https://a.example.com {\n\tformat\n}", "provider a: format needs exactly one argument"},
		{"api_key with two arguments", "provider a https://a.example.com {\n\tapi_key k1 k2\n}", "provider a: api_key needs exactly one argument"},
		{"base_path with a block", "provider a https://a.example.com {\n\tbase_path /v1 {\n\t\tx\n\t}\n}", "provider a: base_path takes no block"},
		{"upstreams with different paths", "provider a https://a.example.com/v1 https://b.example.com/v2", `provider a: upstream URLs have different paths "/v1" and "/v2"`},
		{"upstream URL with a path but no scheme", "provider a api.example.com/v1", `provider a: upstream "api.example.com/v1" has a path but no scheme: write https://api.example.com/v1`},
		{"upstream URL with credentials", "provider a https://user:s3cret@a.example.com", `provider a: upstream "https://user:xxxxx@a.example.com" has credentials in its URL, which reverse_proxy would drop`},
		{"base_path unlike the URL's path", "provider a https://a.example.com/v2 {\n\tbase_path /v1\n}", "provider a: base_path /v1 and the upstream URL's path /v2 differ; keep one"},
		{"header with one argument", "provider a https://a.example.com {\n\theader X-Foo\n}", "provider a: header needs a field and a value"},
		{"default_max_tokens zero", "provider a https://a.example.com {\n\tdefault_max_tokens 0\n}", "provider a: default_max_tokens 0 is not allowed"},
		{"default_max_tokens not a number", "provider a https://a.example.com {\n\tdefault_max_tokens lots\n}", `provider a: default_max_tokens must be an integer, not "lots"`},
		{"forward_client_auth with argument", "provider a https://a.example.com {\n\tforward_client_auth yes\n}", "wrong argument count"},
		{"handle_response in a provider", "provider a https://a.example.com {\n\thandle_response {\n\t\trespond 200\n\t}\n}", "provider a: handle_response is not supported in a provider block"},
		{"bad reverse_proxy subdirective", "provider a https://a.example.com {\n\tlb_policy nonsense\n}", "provider a: "},
		{"bad upstream address", "provider a https://a.example.com/v1?x=1", "provider a"},

		{"model without name", prov + "model", "model needs a name"},
		{"model provider without argument", prov + "model m a {\n\tprovider\n}", "wrong argument count"},
		{"upstream_name without argument", prov + "model m a {\n\tupstream_name\n}", "wrong argument count"},
		{"price with one value", prov + "model m a {\n\tprice 1\n}", "model m: price needs an input and an output price"},
		{"price with three values", prov + "model m a {\n\tprice 1 2 3\n}", "model m: price needs an input and an output price"},
		{"price not a number", prov + "model m a {\n\tprice cheap 2\n}", "model m: invalid price cheap 2"},
		{"quality not a number", prov + "model m a {\n\tquality good\n}", `model m: quality must be a number, got "good"`},
		// JSON has no NaN or infinity: the parser refuses them as numbers.
		{"quality NaN", prov + "model m a {\n\tquality NaN\n}", `model m: quality must be a number, got "NaN"`},
		{"price NaN", prov + "model m a {\n\tprice NaN 1\n}", "model m: invalid price NaN 1"},
		{"price infinite", prov + "model m a {\n\tprice 1 Inf\n}", "model m: invalid price 1 Inf"},
		{"price out of float range", prov + "model m a {\n\tprice 1 1e400\n}", "model m: invalid price 1 1e400"},
		{"weight infinite", prov + "model m a\nroute r {\n\ttarget m {\n\t\tweight Inf\n\t}\n}", `route r: target m: invalid weight "Inf"`},
		{"context not a number", prov + "model m a {\n\tcontext big\n}", `context: want an integer, got "big"`},
		{"capabilities without argument", prov + "model m a {\n\tcapabilities\n}", "wrong argument count"},
		{"unknown model subdirective", prov + "model m a {\n\tcolor blue\n}", "model m: unrecognized subdirective: color"},

		{"route without name", prov + "model m a\nroute", "route needs a name"},
		{"target without model", prov + "model m a\nroute r {\n\ttarget\n}", "route r: target needs a model and optionally a provider"},
		{"target with three arguments", prov + "model m a\nroute r {\n\ttarget m a b\n}", "route r: target needs a model and optionally a provider"},
		{"parameter without value", prov + "model m a\nroute r {\n\ttarget m {\n\t\ttemperature\n\t}\n}", "route r: target m: parameter temperature needs exactly one value"},
		{"parameter with two values", prov + "model m a\nroute r {\n\ttarget m {\n\t\tstop a b\n\t}\n}", "route r: target m: parameter stop needs exactly one value"},
		{"unknown route subdirective", prov + "model m a\nroute r m {\n\tcolour blue\n}", "route r: unrecognized subdirective: colour"},
		{"max_price not a number", prov + "model m a\nroute r m {\n\tmax_price 1 cheap\n}", "route r: invalid max_price 1 cheap"},
		{"strategy twice", prov + "model m a\nroute r m {\n\tstrategy random\n\tstrategy cheapest\n}", "route r: strategy set twice"},

		{"retry_on without argument", "retry_on", "wrong argument count"},
		{"retry_on not a number", "retry_on often", `retry_on: invalid status "often"`},
		// A status is three digits; a class is written 5xx (5 in JSON).
		{"retry_on single digit", "retry_on 5", `retry_on: invalid status "5" (want e.g. 429 or 5xx)`},
		{"retry_on four digits", "retry_on 4290", `retry_on: invalid status "4290"`},
		{"retry_on signed", "retry_on -42", `retry_on: invalid status "-42"`},
		{"max_body not a size", "max_body lots", `max_body: invalid size "lots"`},
		{"max_body beyond int64", "max_body 9EiB", `max_body: invalid size "9EiB"`},
		{"max_body zero", "max_body 0", "max_body: 0 is not allowed"},
		{"max_body without argument", "max_body", "wrong argument count"},
		{"max_attempts not a number", "max_attempts many", `max_attempts: want an integer, got "many"`},
		{"fail_threshold with two arguments", "fail_threshold 1 2", "wrong argument count"},
		{"bad duration", "cooldown soon", `cooldown: invalid duration "soon"`},
		{"zero duration", "first_byte_timeout 0s", "first_byte_timeout: 0 is not allowed"},
		{"duration without argument", "cooldown", "wrong argument count"},
		// A 0 that JSON reads as the default (or as no limit) is refused.
		{"max_depth zero", "max_depth 0", "max_depth: 0 is not allowed (it would mean the default"},
		{"fail_threshold zero", "fail_threshold 0", "fail_threshold: 0 is not allowed"},
		{"rpm zero", prov + "model m a {\n\trpm 0\n}", "rpm: 0 is not allowed (it would mean no limit"},
		{"daily_tokens zero on a key", "key k {\n\tsecret {env.K}\n\tdaily_tokens 0\n}", "daily_tokens: 0 is not allowed"},
		{"budget zero on a route", prov + "model m a\nroute r m {\n\tbudget 0 day\n}", "budget: 0 is not allowed"},
		{"consensus of zero voters", prov + "model m a\nroute r m {\n\tstrategy consensus {\n\t\tvoters 0\n\t}\n}", "voters: 0 is not allowed (it would mean the default, 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSite(t, tc.body)
			if err == nil {
				t.Fatalf("expected an error containing %q, got none", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestValueErrorsCaddyfileAndJSON checks that a value is refused the same
// way whether it comes from a Caddyfile or from JSON: each Caddyfile is
// adapted, provisioned and validated, and so is its JSON equivalent, and
// both errors mention the same thing. (A Caddyfile status such as 42 is
// already refused as syntax, where a status has three digits.)
func TestValueErrorsCaddyfileAndJSON(t *testing.T) {
	const prov = "provider a https://a.example.com\n"
	provJSON := `"providers": [{"name": "a", "proxy": ` + proxyTo("a.example.com:443") + `}]`
	withProvider := func(extra string) string { return `{` + provJSON + `, ` + extra + `}` }
	model := `"models": [{"name": "m", "providers": ["a"]}]`
	withRoute := func(route string) string { return withProvider(model + `, "routes": [` + route + `]`) }
	provider := func(fields string) string {
		return `{"providers": [{"name": "a", ` + fields + `, "proxy": ` + proxyTo("a.example.com:443") + `}]}`
	}
	classifierFile := writeClassifierModel(t)
	for _, tc := range []struct {
		name      string
		caddyfile string
		json      string
		wantErr   string
	}{
		{
			"unknown format",
			"provider a https://a.example.com {\n\tformat gemini\n}",
			provider(`"format": "gemini"`),
			`provider a: unknown format "gemini"`,
		},
		{
			"relative base_path",
			"provider a https://a.example.com {\n\tbase_path v1\n}",
			provider(`"base_path": "v1"`),
			"provider a: base_path must start with '/'",
		},
		{
			"unknown max_tokens_field",
			"provider a https://a.example.com {\n\tmax_tokens_field n_predict\n}",
			provider(`"max_tokens_field": "n_predict"`),
			`provider a: max_tokens_field must be max_tokens or max_completion_tokens, not "n_predict"`,
		},
		{
			"unknown fallback_on",
			"fallback_on timeouts",
			`{"fallback_on": ["timeouts"]}`,
			`fallback_on: unknown error kind "timeouts" (want content_filter)`,
		},
		{
			"negative retries",
			"retries -1",
			`{"retries": -1}`,
			"retries must not be negative",
		},
		{
			"unknown continuation",
			"provider a https://a.example.com {\n\tcontinuation guess\n}",
			provider(`"continuation": "guess"`),
			`provider a: continuation must be prefill, continue_final_message, instruction or off, not "guess"`,
		},
		{
			"negative default_max_tokens",
			"provider a https://a.example.com {\n\tdefault_max_tokens -1\n}",
			provider(`"default_max_tokens": -1`),
			"provider a: default_max_tokens must not be negative",
		},
		{
			"provider without upstream",
			"provider a\nmodel m a",
			`{"providers": [{"name": "a", "proxy": {"handler": "reverse_proxy"}}], ` + model + `}`,
			"provider a: no upstream address",
		},
		{
			"provider with a block but no upstream",
			"provider a {\n\tformat anthropic\n}",
			`{"providers": [{"name": "a", "format": "anthropic", "proxy": {"handler": "reverse_proxy"}}]}`,
			"provider a: no upstream address",
		},
		{
			"model without provider",
			prov + "model m",
			withProvider(`"models": [{"name": "m"}]`),
			"model m: no provider",
		},
		{
			"model with a block but no provider",
			prov + "model m {\n\tquality 0.5\n}",
			withProvider(`"models": [{"name": "m", "quality": 0.5}]`),
			"model m: no provider",
		},
		{
			"negative price",
			prov + "model m a {\n\tprice 1 -2\n}",
			withProvider(`"models": [{"name": "m", "providers": ["a"], "input_price": 1, "output_price": -2}]`),
			"model m: output_price must not be negative, got -2",
		},
		{
			"quality above 1",
			prov + "model m a {\n\tquality 1.5\n}",
			withProvider(`"models": [{"name": "m", "providers": ["a"], "quality": 1.5}]`),
			"model m: quality must be within 0..1, got 1.5",
		},
		{
			"negative quality",
			prov + "model m a {\n\tquality -0.1\n}",
			withProvider(`"models": [{"name": "m", "providers": ["a"], "quality": -0.1}]`),
			"model m: quality must be within 0..1, got -0.1",
		},
		{
			"negative context",
			prov + "model m a {\n\tcontext -1\n}",
			withProvider(`"models": [{"name": "m", "providers": ["a"], "context": -1}]`),
			"model m: context must not be negative, got -1",
		},
		{
			"route without targets",
			prov + "model m a\nroute r",
			withRoute(`{"name": "r"}`),
			"route r: no target",
		},
		{
			"route with only retry_on",
			prov + "model m a\nroute r {\n\tretry_on 429\n}",
			withRoute(`{"name": "r", "retry_on": [429]}`),
			"route r: no target",
		},
		{
			"route retry_on status too high",
			prov + "model m a\nroute r m {\n\tretry_on 600\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "retry_on": [600]}`),
			"route r: retry_on: invalid status 600",
		},
		{
			"route retry_on status too low",
			prov + "model m a\nroute r m {\n\tretry_on 42\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "retry_on": [42]}`),
			"retry_on: invalid status",
		},
		{
			"negative max_price",
			prov + "model m a\nroute r m {\n\tmax_price -1 0\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "max_input_price": -1}`),
			"route r: max_price must not be negative",
		},
		{
			"negative weight",
			prov + "model m a\nroute r {\n\ttarget m {\n\t\tweight -1\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m", "weight": -1}]}`),
			"route r: target m: weight must not be negative",
		},
		{
			"judge of an unknown model",
			prov + "model m a\nroute r m {\n\tstrategy cascade {\n\t\tjudge nobody\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "cascade", "judge": {"model": "nobody"}}}`),
			`route r: judge: unknown model or route "nobody"`,
		},
		{
			"judge that makes several calls",
			prov + "model m a\nroute v m {\n\tstrategy consensus\n}\nroute r m {\n\tstrategy cascade {\n\t\tjudge v\n\t}\n}",
			withProvider(model + `, "routes": [{"name": "v", "targets": [{"model": "m"}], "strategy": {"name": "consensus"}}, {"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "cascade", "judge": {"model": "v"}}}]`),
			"route r: judge: route v makes several calls itself",
		},
		{
			"judge threshold above 1",
			prov + "model m a\nroute r m {\n\tstrategy cascade {\n\t\tjudge m {\n\t\t\tthreshold 7\n\t\t}\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "cascade", "judge": {"model": "m", "threshold": 7}}}`),
			"judge: threshold must be from 0 to 1, got 7",
		},
		{
			"consensus of one voter",
			prov + "model m a\nroute r m {\n\tstrategy consensus {\n\t\tvoters 1\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "consensus", "voters": 1}}`),
			"consensus: voters must be at least 2, got 1",
		},
		{
			"consensus judge mode without a judge",
			prov + "model m a\nroute r m {\n\tstrategy consensus {\n\t\tmode judge\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "consensus", "mode": "judge"}}`),
			"consensus: mode judge needs a judge",
		},
		{
			"consensus regex that does not compile",
			prov + "model m a\nroute r m {\n\tstrategy consensus {\n\t\textract regex (\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "consensus", "extract": "regex", "pattern": "("}}`),
			"consensus: extract regex needs a valid pattern",
		},
		{
			"cascade refusal pattern that does not compile",
			prov + "model m a\nroute r m {\n\tstrategy cascade {\n\t\trefusal_pattern [\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "cascade", "refusal_patterns": ["["]}}`),
			"cascade: refusal pattern",
		},
		{
			"hedge without a delay",
			prov + "model m a\nroute r m {\n\thedge budget 0.5\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "hedge": {"budget": 0.5}}`),
			"route r: hedge: a delay or p95 is required",
		},
		{
			"hedge budget above 1",
			prov + "model m a\nroute r m {\n\thedge 1s budget 150%\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "hedge": {"delay": "1s", "budget": 1.5}}`),
			"route r: hedge: budget must be from 0 to 1, got 1.5",
		},
		{"retry_on status too high", "retry_on 429 600", `{"retry_on": [429, 600]}`, "retry_on: invalid status 600"},
		{"retry_on status too low", "retry_on 099", `{"retry_on": [99]}`, "retry_on: invalid status 99"},
		{"retry_on two-digit status", "retry_on 99", `{"retry_on": [99]}`, "retry_on: invalid status"},
		{"retry_on bad class", "retry_on 6xx", `{"retry_on": [6]}`, "retry_on: invalid status 6 "},
		{"retry_on class 0", "retry_on 0xx", `{"retry_on": [0]}`, "retry_on: invalid status 0 "},
		{"retry_on a success", "retry_on 429 200", `{"retry_on": [429, 200]}`, "retry_on: 200 is not an error status; only a 4xx or 5xx answer moves on"},
		{"retry_on a redirect", "retry_on 302", `{"retry_on": [302]}`, "retry_on: 302 is not an error status"},
		{"retry_on the 2xx class", "retry_on 2xx", `{"retry_on": [2]}`, "retry_on: 2xx is not an error status"},
		{"route retry_on a success", prov + "model m a\nroute r m {\n\tretry_on 200\n}", withRoute(`{"name": "r", "targets": [{"model": "m"}], "retry_on": [200]}`), "route r: retry_on: 200 is not an error status"},
		{"max_body above 1 TiB", "max_body 2TiB", `{"max_body": 2199023255552}`, "max_body: 2199023255552 bytes is more than 1 TiB"},
		{"negative max_depth", "max_depth -1", `{"max_depth": -1}`, "max_depth must not be negative"},
		{"negative max_attempts", "max_attempts -1", `{"max_attempts": -1}`, "max_attempts must not be negative"},
		{"negative fail_threshold", "fail_threshold -1", `{"fail_threshold": -1}`, "fail_threshold must not be negative"},
		{"negative first_byte_timeout", "first_byte_timeout -1s", `{"first_byte_timeout": "-1s"}`, "first_byte_timeout must not be negative"},
		{"negative stream_idle_timeout", "stream_idle_timeout -5s", `{"stream_idle_timeout": "-5s"}`, "stream_idle_timeout must not be negative"},
		{"negative read_body_timeout", "read_body_timeout -1s", `{"read_body_timeout": "-1s"}`, "read_body_timeout must not be negative"},
		{"negative cooldown", "cooldown -1m", `{"cooldown": -60000000000}`, "cooldown must not be negative"},
		{
			"models not auto",
			"provider a https://a.example.com {\n\tmodels all\n}",
			provider(`"models": "all"`),
			`provider a: models must be auto, not "all"`,
		},
		{
			"models auto on azure",
			"provider a https://a.example.com {\n\tformat azure\n\tmodels auto\n}",
			provider(`"format": "azure", "models": "auto"`),
			"provider a: models auto is not supported for azure",
		},
		{
			"models_refresh without models auto",
			"provider a https://a.example.com {\n\tmodels_refresh 1m\n}",
			provider(`"models_refresh": "1m"`),
			"provider a: models_refresh and models_timeout need models auto",
		},
		{
			"models_refresh below a second",
			"provider a https://a.example.com {\n\tmodels auto\n\tmodels_refresh 10ms\n}",
			provider(`"models": "auto", "models_refresh": "10ms"`),
			"provider a: models_refresh must be at least 1s",
		},
		{
			"negative models_timeout",
			"provider a https://a.example.com {\n\tmodels auto\n\tmodels_timeout -1s\n}",
			provider(`"models": "auto", "models_timeout": "-1s"`),
			"provider a: models_refresh and models_timeout must not be negative",
		},
		{
			"pattern with providers",
			prov + "model gpt-* a",
			withProvider(`"models": [{"name": "gpt-*", "providers": ["a"]}]`),
			"model gpt-*: a pattern sets defaults for discovered models",
		},
		{
			"bad pattern",
			prov + "model gpt-[* {\n\tprice 1 2\n}",
			withProvider(`"models": [{"name": "gpt-[*"}]`),
			"model gpt-[*: invalid pattern",
		},
		{
			"route to a pattern",
			prov + "model gpt-* {\n\tprice 1 2\n}\nroute r gpt-*",
			withProvider(`"models": [{"name": "gpt-*"}], "routes": [{"name": "r", "targets": [{"model": "gpt-*"}]}]`),
			`route r: unknown model "gpt-*"`,
		},
		{
			"difficulty tier of an unknown model",
			prov + "model m a\nroute r m {\n\tstrategy difficulty {\n\t\ttier 0 smal\n\t\ttier 0.3 m\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "difficulty", "tiers": [{"min": 0, "models": ["smal"]}, {"min": 0.3, "models": ["m"]}]}}`),
			`route r: difficulty: tier 0: unknown model "smal"`,
		},
		{
			"rule of an unknown model",
			prov + "model m a\nroute r m {\n\tstrategy rules {\n\t\trule code {\n\t\t\tkeywords code\n\t\t\tmodels m nope\n\t\t}\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "rules", "rules": [{"name": "code", "when": {"keywords": ["code"]}, "models": ["m", "nope"]}]}}`),
			`route r: rule code: unknown model "nope"`,
		},
		{
			"rules default of an unknown model",
			prov + "model m a\nroute r m {\n\tstrategy rules {\n\t\tdefault nope\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "rules", "default": {"models": ["nope"]}}}`),
			`route r: rules: default: unknown model "nope"`,
		},
		{
			"classifier premium of an unknown model",
			prov + "model m a\nroute r m {\n\tstrategy classifier " + classifierFile + " {\n\t\tpremium nope\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "classifier", "model_file": "` + classifierFile + `", "premium": ["nope"]}}`),
			`route r: classifier: premium: unknown model "nope"`,
		},
		{
			"rule setting the model",
			prov + "model m a\nroute r m {\n\tstrategy rules {\n\t\trule code {\n\t\t\tmodels m\n\t\t\tset model big\n\t\t}\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "rules", "rules": [{"name": "code", "models": ["m"], "params": {"model": "\"big\""}}]}}`),
			`route r: rule code cannot set "model"`,
		},
		{
			"rule setting the stream flag",
			prov + "model m a\nroute r m {\n\tstrategy rules {\n\t\trule code {\n\t\t\tmodels m\n\t\t\tset stream false\n\t\t}\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "rules", "rules": [{"name": "code", "models": ["m"], "params": {"stream": false}}]}}`),
			`route r: rule code cannot set "stream"`,
		},
		{
			"rules default setting the models list",
			prov + "model m a\nroute r m {\n\tstrategy rules {\n\t\tdefault {\n\t\t\tset models.0 m\n\t\t}\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "rules", "default": {"params": {"models.0": "\"m\""}}}}`),
			`route r: rules: default cannot set "models.0"`,
		},
		{
			"rule setting a custom model key",
			"model_key req.model\n" + prov + "model m a\nroute r m {\n\tstrategy rules {\n\t\trule code {\n\t\t\tmodels m\n\t\t\tset req 1\n\t\t}\n\t}\n}",
			withProvider(`"model_key": "req.model", ` + model + `, "routes": [{"name": "r", "targets": [{"model": "m"}], "strategy": {"name": "rules", "rules": [{"name": "code", "models": ["m"], "params": {"req": 1}}]}}]`),
			`route r: rule code cannot set "req"`,
		},
		{
			"target setting the models list",
			prov + "model m a\nroute r {\n\ttarget m {\n\t\tmodels [\"x\"]\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m", "params": {"models": ["x"]}}]}`),
			`route r: target m cannot override "models"`,
		},
		{"model_to_header naming a credential", "model_to_header Authorization", `{"model_to_header": "Authorization"}`, "model_to_header: Authorization carries credentials"},
		{"model_to_header naming x-api-key", "model_to_header x-api-key", `{"model_to_header": "x-api-key"}`, "model_to_header: X-Api-Key carries credentials"},
		{"provider_header naming Host", "provider_header Host", `{"provider_header": "Host"}`, "provider_header: Host is a hop-by-hop or message header"},
		{"provider_header naming Connection", "provider_header connection", `{"provider_header": "connection"}`, "provider_header: Connection is a hop-by-hop or message header"},
		{"provider_header naming a credential", "provider_header Cookie", `{"provider_header": "Cookie"}`, "provider_header: Cookie carries credentials"},
		{"model_to_header with an invalid name", `model_to_header "X Model"`, `{"model_to_header": "X Model"}`, `model_to_header: "X Model" is not a header field name`},
		{"feedback_path on chat completions", "feedback_path /v1/chat/completions", `{"feedback_path": "/v1/chat/completions"}`, "feedback_path: /v1/chat/completions ends in /completions, an API endpoint the gateway serves"},
		{"feedback_path on messages", "feedback_path /v1/messages", `{"feedback_path": "/v1/messages"}`, "feedback_path: /v1/messages ends in /messages"},
		{"feedback_path on the model list", "feedback_path /v1/models", `{"feedback_path": "/v1/models"}`, "feedback_path: /v1/models is a model list path"},
		{"feedback_path on a configured suffix", "enable_on_path_suffix /chat/completions /rank\nfeedback_path /v1/rank", `{"enable_on_path_suffix": ["/chat/completions", "/rank"], "feedback_path": "/v1/rank"}`, "feedback_path: /v1/rank ends in /rank"},
		{"feedback_path on an endpoint with any suffix", "enable_on_path_suffix *\nfeedback_path /v1/embeddings", `{"enable_on_path_suffix": ["*"], "feedback_path": "/v1/embeddings"}`, "feedback_path: /v1/embeddings ends in /embeddings"},
		{
			"unknown capability",
			prov + "model m a {\n\tcapabilities tools telepathy\n}",
			withProvider(`"models": [{"name": "m", "providers": ["a"], "capabilities": ["tools", "telepathy"]}]`),
			`model m: unknown capability "telepathy" (want tools, vision, json)`,
		},
		{
			"misspelled capability of a pattern",
			prov + "model gpt-* {\n\tcapabilities vison\n}",
			withProvider(`"models": [{"name": "gpt-*", "capabilities": ["vison"]}]`),
			`model gpt-*: unknown capability "vison"`,
		},
		{"upstream dial with a path", "provider a {\n\tto api.example.com/v1\n}", `{"providers": [{"name": "a", "proxy": ` + proxyTo("api.example.com/v1:80") + `}]}`, `provider a: upstream dial address "api.example.com/v1:80" holds a path`},
		{
			"weight without the weighted strategy",
			prov + "model m a\nroute r {\n\ttarget m {\n\t\tweight 3\n\t}\n\tstrategy cheapest\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m", "weight": 3}], "strategy": {"name": "cheapest"}}`),
			"route r: target m has a weight, which only the weighted strategy reads: add strategy weighted",
		},
		{
			"weight on a route without a strategy",
			prov + "model m a\nroute r {\n\ttarget m {\n\t\tweight 3\n\t}\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m", "weight": 3}]}`),
			"route r: target m has a weight, which only the weighted strategy reads",
		},
		{"cooldown in nanoseconds", "cooldown 30ns", `{"cooldown": 30}`, `cooldown: 30ns is less than a millisecond; a JSON number is in nanoseconds: write a duration string such as "30s"`},
		{"first_byte_timeout in nanoseconds", "first_byte_timeout 5ns", `{"first_byte_timeout": 5}`, "first_byte_timeout: 5ns is less than a millisecond"},
		{"max_retry_wait in microseconds", "max_retry_wait 999us", `{"max_retry_wait": 999000}`, "max_retry_wait: 999µs is less than a millisecond"},
		{
			"models_refresh in nanoseconds",
			"provider a https://a.example.com {\n\tmodels auto\n\tmodels_refresh 300ns\n}",
			provider(`"models": "auto", "models_refresh": 300`),
			"provider a: models_refresh: 300ns is less than a millisecond",
		},
		{"state timeout in nanoseconds", "state memory {\n\ttimeout 50ns\n}", `{"state": {"backend": "memory", "timeout": 50}}`, "state: timeout: 50ns is less than a millisecond"},
		{
			"hedge delay in nanoseconds",
			prov + "model m a\nroute r {\n\tmodels m\n\thedge 300ns\n}",
			withRoute(`{"name": "r", "targets": [{"model": "m"}], "hedge": {"delay": 300}}`),
			"hedge: delay: 300ns is less than a millisecond",
		},
		{
			"pattern without a discovering provider",
			prov + "model gpt-* {\n\tprice 1 2\n}",
			withProvider(`"models": [{"name": "gpt-*", "input_price": 1, "output_price": 2}]`),
			"model gpt-*: a pattern sets defaults for discovered models, and no provider discovers any: add models auto",
		},
		{
			"model named like a provider/model pin",
			prov + "model m a\nmodel a/m a",
			withProvider(model[:len(model)-1] + `, {"name": "a/m", "providers": ["a"]}]`),
			"model a/m: the name reads as provider a's model m (provider/model), and would take those requests",
		},
		{
			"route named like a provider/model pin",
			prov + "model m a\nroute a/m m",
			withRoute(`{"name": "a/m", "targets": [{"model": "m"}]}`),
			"route a/m: the name reads as provider a's model m",
		},
		{"max_retry_wait without 429 in retry_on", "retry_on 5xx\nmax_retry_wait 10s", `{"retry_on": [5], "max_retry_wait": "10s"}`, "max_retry_wait waits out a 429, and neither retry_on nor a route's lists 429"},
		{"retries above the cap", "retries 100", `{"retries": 100}`, "retries: 100 is more than 10"},
		{"path suffix without slash", "enable_on_path_suffix chat/completions", `{"enable_on_path_suffix": ["chat/completions"]}`, `"chat/completions" must start with '/'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, from := range []struct {
				name string
				load func() error
			}{
				{"Caddyfile", func() error { _, err := loadSite(t, tc.caddyfile); return err }},
				{"JSON", func() error { _, err := loadHandler(t, tc.json); return err }},
			} {
				err := from.load()
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("%s: error = %v, want one containing %q", from.name, err, tc.wantErr)
				}
			}
		})
	}
}

// TestCaddyfileBasePathRoot checks that `base_path /` means the root in a
// Caddyfile as in JSON (the parser used to trim it to "", the default /v1).
func TestCaddyfileBasePathRoot(t *testing.T) {
	h, err := loadSite(t, "provider a https://a.example.com {\n\tbase_path /\n}")
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Providers[0].BasePath; got != "" {
		t.Errorf("base_path / provisioned as %q, want the root (\"\")", got)
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
		read_body_timeout 10s
		forward_headers X-Request-Id
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
		{"read_body_timeout", h.ReadBodyTimeout, caddy.Duration(10 * time.Second)},
		{"forward_headers", h.ForwardHeaders, []string{"X-Request-Id"}},
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
	raw := adaptedHandler(t, out)
	h := mustLoadHandler(t, raw)
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

// writeClassifierModel writes a classifier model file of one arm, m, and
// returns its path.
func writeClassifierModel(t *testing.T) string {
	t.Helper()
	m := &strategies.ClassifierModel{Version: strategies.ClassifierVersion, Bits: 4, Lambdas: []float64{10, 0}}
	m.Shared = make(strategies.Floats, m.Dim())
	m.Models = []strategies.ClassifierArm{{Name: "m", Weights: make(strategies.Floats, m.Dim()), MeanQuality: 0.5, Price: 1e-6}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "router.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
