package llmroute

import (
	"encoding/json"
	"go/build"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/internal/testcaddy"
)

func TestMain(m *testing.M) { testcaddy.Main(m) }

// newContext returns a Caddy context that is cancelled (and its modules
// cleaned up) when the test ends.
var newContext = testcaddy.Context

// loadHandler unmarshals a JSON config into a Handler and provisions and
// validates it like Caddy would. It returns the first error.
func loadHandler(t testing.TB, cfg string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	dec := json.NewDecoder(strings.NewReader(cfg))
	dec.DisallowUnknownFields()
	if err := dec.Decode(h); err != nil {
		t.Fatalf("decoding config: %v\n%s", err, cfg)
	}
	// As Caddy does: cleaned up after a failed Provision too, and with
	// the config otherwise (here: when the test ends).
	t.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Provision(newContext(t)); err != nil {
		return h, err
	}
	return h, h.Validate()
}

// mustLoadHandler is loadHandler for configs that must be valid.
func mustLoadHandler(t testing.TB, cfg string) *Handler {
	t.Helper()
	h, err := loadHandler(t, cfg)
	if err != nil {
		t.Fatalf("loading handler: %v\n%s", err, cfg)
	}
	return h
}

// proxyTo is the JSON of a reverse_proxy reaching the given dial
// addresses.
func proxyTo(dials ...string) string {
	ups := make([]map[string]string, len(dials))
	for i, d := range dials {
		ups[i] = map[string]string{"dial": d}
	}
	b, _ := json.Marshal(map[string]any{"handler": "reverse_proxy", "upstreams": ups})
	return string(b)
}

func TestCaddyModule(t *testing.T) {
	info := Handler{}.CaddyModule()
	if info.ID != "http.handlers.llm_route" {
		t.Errorf("module ID = %q, want http.handlers.llm_route", info.ID)
	}
	if _, ok := info.New().(*Handler); !ok {
		t.Errorf("New() returned %T, want *Handler", info.New())
	}
	mod, err := caddy.GetModule("http.handlers.llm_route")
	if err != nil {
		t.Fatalf("module not registered: %v", err)
	}
	if mod.ID != info.ID {
		t.Errorf("registered module ID = %q", mod.ID)
	}
}

// TestModuleLeavesOutTheMock checks that the package and the module's
// packages it imports (not counting tests) do not import the mock, so
// that `xcaddy build --with github.com/caddy-llm-route/llmroute` does not
// register llm_mock.
func TestModuleLeavesOutTheMock(t *testing.T) {
	const module = "github.com/caddy-llm-route/llmroute"
	seen := map[string]bool{module: true}
	todo := []string{module}
	for len(todo) > 0 {
		path := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		pkg, err := build.ImportDir(filepath.Join(".", strings.TrimPrefix(path, module)), 0)
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			if imp == module+"/mock" {
				t.Fatalf("%s imports %s", path, imp)
			}
			if !seen[imp] && strings.HasPrefix(imp, module+"/") {
				seen[imp] = true
				todo = append(todo, imp)
			}
		}
	}
}

func TestProvisionDefaults(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"]}]
	}`)
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"model_key", h.ModelKey, "model"},
		{"enable_on_path_suffix", h.EnableOnPathSuffix, DefaultPathSuffixes},
		{"max_body", h.MaxBody, int64(8 << 20)},
		{"max_depth", h.MaxDepth, 64},
		{"first_byte_timeout", h.FirstByteTimeout, caddy.Duration(5 * time.Minute)},
		{"stream_idle_timeout", h.StreamIdleTimeout, caddy.Duration(2 * time.Minute)},
		{"read_body_timeout", h.ReadBodyTimeout, caddy.Duration(30 * time.Second)},
		{"retry_on", h.RetryOn, []int{429, 5}},
		{"cooldown", h.Cooldown, caddy.Duration(30 * time.Second)},
		{"fail_threshold", h.FailThreshold, 3},
		{"max_attempts", h.MaxAttempts, 0},
		{"upstream_name", h.Models[0].UpstreamName, "m"},
		{"provider format", h.Providers[0].Format, "openai"},
		{"provider base_path", h.Providers[0].BasePath, "/v1"},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	if h.logger == nil {
		t.Error("logger not set")
	}
	if h.providers["a"] == nil || h.models["m"] == nil || h.routes == nil {
		t.Error("indexes not built")
	}
	if h.providers["a"].Proxy() == nil {
		t.Error("provider proxy not provisioned")
	}
}

// TestProvisionCopiesDefaults checks that a handler's default lists are
// its own: changing them leaves the package defaults (and so every other
// handler) alone.
func TestProvisionCopiesDefaults(t *testing.T) {
	wantSuffixes, wantRetryOn := slices.Clone(DefaultPathSuffixes), slices.Clone(defaultRetryOn)
	h := mustLoadHandler(t, `{}`)
	h.EnableOnPathSuffix[0] = "/changed"
	h.RetryOn[0] = 500
	// (Appending within the capacity of a shared array would change it too.)
	h.EnableOnPathSuffix = append(h.EnableOnPathSuffix[:1], "/appended")
	h.RetryOn = append(h.RetryOn[:1], 404)
	if !slices.Equal(DefaultPathSuffixes, wantSuffixes) {
		t.Errorf("DefaultPathSuffixes changed through a handler: %q", DefaultPathSuffixes)
	}
	if !slices.Equal(defaultRetryOn, wantRetryOn) {
		t.Errorf("defaultRetryOn changed through a handler: %v", defaultRetryOn)
	}
}

func TestProvisionKeepsSettings(t *testing.T) {
	h := mustLoadHandler(t, `{
		"model_key": "request.model",
		"enable_on_path_suffix": ["*"],
		"max_body": 1024,
		"max_depth": 8,
		"first_byte_timeout": 1000000000,
		"stream_idle_timeout": 2000000000,
		"retry_on": [500],
		"max_attempts": 2,
		"cooldown": 3000000000,
		"fail_threshold": 1,
		"providers": [{"name": "a", "format": "azure", "base_path": "/az/", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"], "upstream_name": "dep"}]
	}`)
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"model_key", h.ModelKey, "request.model"},
		{"enable_on_path_suffix", h.EnableOnPathSuffix, []string{"*"}},
		{"max_body", h.MaxBody, int64(1024)},
		{"max_depth", h.MaxDepth, 8},
		{"first_byte_timeout", h.FirstByteTimeout, caddy.Duration(time.Second)},
		{"stream_idle_timeout", h.StreamIdleTimeout, caddy.Duration(2 * time.Second)},
		{"retry_on", h.RetryOn, []int{500}},
		{"max_attempts", h.MaxAttempts, 2},
		{"cooldown", h.Cooldown, caddy.Duration(3 * time.Second)},
		{"fail_threshold", h.FailThreshold, 1},
		{"upstream_name", h.Models[0].UpstreamName, "dep"},
		{"provider base_path", h.Providers[0].BasePath, "/az"},
		{"provider api_version", h.Providers[0].APIVersion, "2024-10-21"},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	proxy := proxyTo("127.0.0.1:1")
	providers := `"providers": [
		{"name": "a", "proxy": ` + proxy + `},
		{"name": "b", "proxy": ` + proxy + `},
		{"name": "c", "format": "anthropic", "proxy": ` + proxy + `}
	]`
	for _, tc := range []struct {
		name    string
		config  string
		wantErr string // empty: valid
	}{
		{
			name: "valid",
			config: `{` + providers + `,
				"models": [
					{"name": "m", "providers": ["a", "b"], "quality": 1, "input_price": 0.5, "output_price": 2, "context": 1000},
					{"name": "n", "providers": ["c"], "upstream_name": "claude-x"}
				],
				"routes": [{"name": "r", "targets": [
					{"model": "m", "provider": "b", "params": {"temperature": 0.1, "metadata.tag": "\"x\""}},
					{"model": "n"}
				]}],
				"enable_on_path_suffix": ["/chat/completions", "*"]
			}`,
		},
		{
			name:    "model with unknown provider",
			config:  `{` + providers + `, "models": [{"name": "m", "providers": ["a", "nope"]}]}`,
			wantErr: `model m: unknown provider "nope"`,
		},
		{
			name:    "model without provider",
			config:  `{` + providers + `, "models": [{"name": "m", "providers": []}]}`,
			wantErr: "model m: no provider",
		},
		{
			name: "route with unknown model",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": [{"model": "m"}, {"model": "nope"}]}]}`,
			wantErr: `route r: unknown model "nope"`,
		},
		{
			name: "target pinned to a provider not serving the model",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": [{"model": "m", "provider": "b"}]}]}`,
			wantErr: `route r: model m is not served by provider "b"`,
		},
		{
			name: "target pinned to an unknown provider",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": [{"model": "m", "provider": "zzz"}]}]}`,
			wantErr: `not served by provider "zzz"`,
		},
		{
			name: "route named like a model",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "m", "targets": [{"model": "m"}]}]}`,
			wantErr: "route m has the name of a model",
		},
		{
			name: "route without targets",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": []}]}`,
			wantErr: "route r: no target",
		},
		{
			name:    "duplicate provider",
			config:  `{"providers": [{"name": "a", "proxy": ` + proxy + `}, {"name": "a", "proxy": ` + proxy + `}]}`,
			wantErr: "provider a defined twice",
		},
		{
			name:    "duplicate model",
			config:  `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}, {"name": "m", "providers": ["b"]}]}`,
			wantErr: "model m defined twice",
		},
		{
			name: "duplicate route",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": [{"model": "m"}]}, {"name": "r", "targets": [{"model": "m"}]}]}`,
			wantErr: "route r defined twice",
		},
		{
			name:    "azure deployment with slash",
			config:  `{"providers": [{"name": "az", "format": "azure", "proxy": ` + proxy + `}], "models": [{"name": "m", "providers": ["az"], "upstream_name": "x/y"}]}`,
			wantErr: `upstream_name "x/y" is an Azure deployment and must not contain '/'`,
		},
		{
			name:    "azure deployment with query",
			config:  `{"providers": [{"name": "az", "format": "azure", "proxy": ` + proxy + `}], "models": [{"name": "m", "providers": ["az"], "upstream_name": "x?y"}]}`,
			wantErr: `upstream_name "x?y" is an Azure deployment`,
		},
		{
			name:    "quality above 1",
			config:  `{` + providers + `, "models": [{"name": "m", "providers": ["a"], "quality": 1.01}]}`,
			wantErr: "quality must be within 0..1",
		},
		{
			name:    "negative price",
			config:  `{` + providers + `, "models": [{"name": "m", "providers": ["a"], "output_price": -1}]}`,
			wantErr: "model m: output_price must not be negative, got -1",
		},
		{
			name:    "negative context",
			config:  `{` + providers + `, "models": [{"name": "m", "providers": ["a"], "context": -1}]}`,
			wantErr: "model m: context must not be negative, got -1",
		},
		{
			name:    "model name with space",
			config:  `{` + providers + `, "models": [{"name": "m x", "providers": ["a"]}]}`,
			wantErr: `model "m x": name must not contain spaces`,
		},
		{
			name:    "empty model name",
			config:  `{` + providers + `, "models": [{"name": "", "providers": ["a"]}]}`,
			wantErr: "empty name",
		},
		{
			name: "route name with control character",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r\u0007", "targets": [{"model": "m"}]}]}`,
			wantErr: "name must not contain spaces or control characters",
		},
		{
			name: "param overriding the model key",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": [{"model": "m", "params": {"model": "\"other\""}}]}]}`,
			wantErr: `cannot override "model"`,
		},
		{
			name: "param overriding a custom model key",
			config: `{"model_key": "req.model",` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": [{"model": "m", "params": {"req.model": "\"other\""}}]}]}`,
			wantErr: `cannot override "req.model"`,
		},
		{
			name:    "enable_on_path_suffix without slash",
			config:  `{"enable_on_path_suffix": ["chat/completions"]}`,
			wantErr: `"chat/completions" must start with '/'`,
		},
		{
			name:    "forward_headers naming a credential",
			config:  `{"forward_headers": ["x-api-key"]}`,
			wantErr: "forward_headers: x-api-key carries the client's credentials",
		},
		{
			name:    "forward_headers with an invalid name",
			config:  `{"forward_headers": ["X Bad"]}`,
			wantErr: `forward_headers: "X Bad" is not a header field name`,
		},
		{
			name: "param overriding the stream flag",
			config: `{` + providers + `, "models": [{"name": "m", "providers": ["a"]}],
				"routes": [{"name": "r", "targets": [{"model": "m", "params": {"stream": "true"}}]}]}`,
			wantErr: `cannot override "stream"`,
		},
		{
			name:    "provider listed twice",
			config:  `{` + providers + `, "models": [{"name": "m", "providers": ["a", "a"]}]}`,
			wantErr: "model m: provider a listed twice",
		},
		{
			name:    "negative first_byte_timeout",
			config:  `{"first_byte_timeout": "-1s"}`,
			wantErr: "first_byte_timeout must not be negative",
		},
		{
			name:    "negative cooldown",
			config:  `{"cooldown": "-1s"}`,
			wantErr: "must not be negative",
		},
		{
			name:    "negative max_attempts",
			config:  `{"max_attempts": -1}`,
			wantErr: "must not be negative",
		},
		{
			name:    "negative max_body",
			config:  `{"max_body": -1}`,
			wantErr: "must not be negative",
		},
		{
			name:    "provider without name",
			config:  `{"providers": [{"proxy": ` + proxy + `}]}`,
			wantErr: "provider without a name",
		},
		{
			name:    "provider name with slash",
			config:  `{"providers": [{"name": "a/b", "proxy": ` + proxy + `}]}`,
			wantErr: "name must not contain '/'",
		},
		{
			name:    "provider with unknown format",
			config:  `{"providers": [{"name": "a", "format": "gemini", "proxy": ` + proxy + `}]}`,
			wantErr: `unknown format "gemini"`,
		},
		{
			name:    "provider with relative base_path",
			config:  `{"providers": [{"name": "a", "base_path": "v1", "proxy": ` + proxy + `}]}`,
			wantErr: "base_path must start with '/'",
		},
		{
			name:    "provider without proxy",
			config:  `{"providers": [{"name": "a"}]}`,
			wantErr: "provider a: no proxy configured",
		},
		{
			name:    "provider whose proxy is not a reverse_proxy",
			config:  `{"providers": [{"name": "a", "proxy": {"handler": "static_response"}}]}`,
			wantErr: "proxy must be a reverse_proxy handler",
		},
		{
			name:    "provider proxy with an unknown field",
			config:  `{"providers": [{"name": "a", "proxy": {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:1"}], "lb_polcy": {}}}]}`,
			wantErr: `unknown field "lb_polcy"`,
		},
		{
			name:    "null provider",
			config:  `{"providers": [null]}`,
			wantErr: "null provider",
		},
		{
			name:    "null model",
			config:  `{"models": [null]}`,
			wantErr: "null model",
		},
		{
			name:   "null strategy: the default",
			config: `{"providers": [{"name": "a", "proxy": ` + proxyTo("127.0.0.1:1") + `}], "models": [{"name": "m", "providers": ["a"]}], "routes": [{"name": "r", "targets": [{"model": "m"}], "strategy": null, "hedge": null}]}`,
		},
		{
			name:    "null target",
			config:  `{"providers": [{"name": "a", "proxy": ` + proxyTo("127.0.0.1:1") + `}], "models": [{"name": "m", "providers": ["a"]}], "routes": [{"name": "r", "targets": [{"model": "m"}, null]}]}`,
			wantErr: "route r: null target",
		},
		{
			name:    "null target of a route with a strategy",
			config:  `{"providers": [{"name": "a", "proxy": ` + proxyTo("127.0.0.1:1") + `}], "models": [{"name": "m", "providers": ["a"]}], "routes": [{"name": "r", "targets": [null], "strategy": {"name": "cheapest"}}]}`,
			wantErr: "route r: null target",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadHandler(t, tc.config)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("expected an error containing %q, got none", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}
