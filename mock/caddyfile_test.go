package mock

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
	}{
		{
			name:  "empty",
			input: `llm_mock`,
			want:  Handler{},
		},
		{
			name:  "empty block",
			input: "llm_mock {\n}",
			want:  Handler{},
		},
		{
			name: "everything",
			input: `llm_mock {
				name alpha
				model gpt-mock
				latency 10ms
				ttft 1.5s
				tokens_per_second 42.5
				text "Hello from alpha."
				api_key {env.MOCK_KEY}
				cached_tokens 12
				cache_write_tokens 0
				fault_header X-Chaos
				fault status,code=503,count=2
				fault slow_first_token,delay=2s
			}`,
			want: Handler{
				Name:            "alpha",
				Model:           "gpt-mock",
				Latency:         caddy.Duration(10 * time.Millisecond),
				TTFT:            caddy.Duration(1500 * time.Millisecond),
				TokensPerSecond: 42.5,
				Text:            "Hello from alpha.",
				APIKey:          "{env.MOCK_KEY}",
				CachedTokens:    12,
				FaultHeader:     "X-Chaos",
				Faults:          []string{"status,code=503,count=2", "slow_first_token,delay=2s"},
			},
		},
		{
			name: "unquoted text",
			input: `llm_mock {
				text one two   three
				latency 1d
			}`,
			want: Handler{Text: "one two three", Latency: caddy.Duration(24 * time.Hour)},
		},
		{
			name: "cache",
			input: `llm_mock {
				cache_write_tokens 300
				cached_tokens 1024
			}`,
			want: Handler{CachedTokens: 1024, CacheWriteTokens: 300},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("got  %+v\nwant %+v", h, tc.want)
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, input, wantErr string
	}{
		{"argument", `llm_mock alpha`, "wrong argument count"},
		{"unknown subdirective", "llm_mock {\n\tcolor blue\n}", "unrecognized subdirective: color"},
		{"missing name", "llm_mock {\n\tname\n}", "wrong argument count"},
		{"two names", "llm_mock {\n\tname a b\n}", "wrong argument count"},
		{"missing text", "llm_mock {\n\ttext\n}", "wrong argument count"},
		{"bad latency", "llm_mock {\n\tlatency soon\n}", "bad latency value 'soon'"},
		{"negative ttft", "llm_mock {\n\tttft -1s\n}", "ttft must not be negative"},
		{"bad rate", "llm_mock {\n\ttokens_per_second fast\n}", "bad tokens_per_second value 'fast'"},
		{"negative rate", "llm_mock {\n\ttokens_per_second -2\n}", "bad tokens_per_second value '-2'"},
		{"missing cached_tokens", "llm_mock {\n\tcached_tokens\n}", "wrong argument count"},
		{"two cached_tokens", "llm_mock {\n\tcached_tokens 1 2\n}", "wrong argument count"},
		{"bad cached_tokens", "llm_mock {\n\tcached_tokens many\n}", "bad cached_tokens value 'many'"},
		{"fractional cached_tokens", "llm_mock {\n\tcached_tokens 1.5\n}", "bad cached_tokens value '1.5'"},
		{"negative cached_tokens", "llm_mock {\n\tcached_tokens -1\n}", "bad cached_tokens value '-1': must be an integer, at least 0"},
		{"missing cache_write_tokens", "llm_mock {\n\tcache_write_tokens\n}", "wrong argument count"},
		{"bad cache_write_tokens", "llm_mock {\n\tcache_write_tokens 1e3\n}", "bad cache_write_tokens value '1e3'"},
		{"negative cache_write_tokens", "llm_mock {\n\tcache_write_tokens -5\n}", "bad cache_write_tokens value '-5'"},
		{"missing fault", "llm_mock {\n\tfault\n}", "fault takes a single spec"},
		{"spaced fault", "llm_mock {\n\tfault status, code=503\n}", "fault takes a single spec"},
		{"unknown fault", "llm_mock {\n\tfault explode\n}", `invalid fault 'explode': unknown fault kind "explode"`},
		{"bad fault key", "llm_mock {\n\tfault cut,delay=1s\n}", `unknown key "delay"`},
		{"bad fault value", "llm_mock {\n\tfault status,code=abc\n}", "bad code value"},
		{"targeted fault", "llm_mock {\n\tfault alpha:reset\n}", "only allowed in the fault header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error lacks the file position: %v", err)
			}
		})
	}
}

// TestCaddyfileAdapt checks that the directive is registered and
// ordered, and that its JSON provisions.
func TestCaddyfileAdapt(t *testing.T) {
	input := ":8080 {\n" +
		"\trespond /health 200\n" +
		"\tllm_mock /v1/* {\n" +
		"\t\tname alpha\n" +
		"\t\tttft 250ms\n" +
		"\t\tcached_tokens 64\n" +
		"\t\tcache_write_tokens 16\n" +
		"\t\tfault status,code=429,count=1\n" +
		"\t}\n" +
		"}\n"
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	out, warnings, err := adapter.Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}

	routes := gjson.GetBytes(out, "apps.http.servers.srv0.routes")
	var handlers []string
	var mockJSON string
	for _, route := range routes.Array() {
		handler := route.Get("handle.0")
		handlers = append(handlers, handler.Get("handler").String())
		if handler.Get("handler").String() == "llm_mock" {
			mockJSON = handler.Raw
		}
	}
	// llm_mock is ordered before respond
	if got := strings.Join(handlers, " "); got != "llm_mock static_response" {
		t.Fatalf("handlers in order: %s\n%s", got, out)
	}

	var h Handler
	if err := json.Unmarshal([]byte(mockJSON), &h); err != nil {
		t.Fatal(err)
	}
	if gjson.Get(mockJSON, "cached_tokens").Int() != 64 || gjson.Get(mockJSON, "cache_write_tokens").Int() != 16 {
		t.Errorf("cache fields in %s", mockJSON)
	}
	if h.Name != "alpha" || time.Duration(h.TTFT) != 250*time.Millisecond || len(h.Faults) != 1 ||
		h.CachedTokens != 64 || h.CacheWriteTokens != 16 {
		t.Errorf("decoded %+v from %s", h, mockJSON)
	}
	provision(t, &h)
	if len(h.faults) != 1 || h.faults[0].code != 429 || h.faults[0].count != 1 {
		t.Errorf("provisioned faults: %+v", h.faults)
	}
}

func TestModuleInfo(t *testing.T) {
	info := Handler{}.CaddyModule()
	if info.ID != "http.handlers.llm_mock" {
		t.Errorf("ID = %s", info.ID)
	}
	if _, ok := info.New().(*Handler); !ok {
		t.Errorf("New returns %T", info.New())
	}
	mod, err := caddy.GetModule("http.handlers.llm_mock")
	if err != nil || mod.ID != info.ID {
		t.Errorf("module not registered: %v", err)
	}
}
