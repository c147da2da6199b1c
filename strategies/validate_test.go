package strategies_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// valueCases are the values the strategies reject, each written as a
// Caddyfile and as the JSON config it adapts to. The Caddyfile parsers
// check syntax only, so each Caddyfile parses; Validate judges the
// values, so both forms fail to load, with the same error, which names
// the setting. (The Caddyfile tests hold the syntax errors.)
var valueCases = []struct {
	name      string
	caddyfile string
	json      string // "" where JSON has no such value (NaN, Inf)
	want      string // in the error: the setting, and what is wrong
}{
	// lowest_latency, highest_throughput
	{"explore above 1", "lowest_latency {\n explore 1.5\n}", `{"explore":1.5}`,
		"lowest_latency: explore must be from 0 to 1, got 1.5"},
	{"explore negative", "lowest_latency {\n explore -0.1\n}", `{"explore":-0.1}`,
		"lowest_latency: explore must be from 0 to 1, got -0.1"},
	{"explore NaN", "lowest_latency {\n explore NaN\n}", "",
		"lowest_latency: explore must be from 0 to 1, got NaN"},
	{"min_samples negative", "lowest_latency {\n min_samples -1\n}", `{"min_samples":-1}`,
		"lowest_latency: min_samples must not be negative, got -1"},
	{"throughput explore", "highest_throughput {\n explore 2\n}", `{"explore":2}`,
		"highest_throughput: explore must be from 0 to 1, got 2"},
	{"throughput min_samples", "highest_throughput {\n min_samples -3\n}", `{"min_samples":-3}`,
		"highest_throughput: min_samples must not be negative, got -3"},

	// cheapest
	{"expected_output negative", "cheapest {\n expected_output -1\n}", `{"expected_output":-1}`,
		"cheapest: expected_output must not be negative, got -1"},

	// balanced
	{"weight negative", "balanced {\n cost_weight -1\n}", `{"cost_weight":-1}`,
		"balanced: cost_weight must be a finite number of at least 0, got -1"},
	{"weight Inf", "balanced {\n latency_weight Inf\n}", "",
		"balanced: latency_weight must be a finite number of at least 0, got +Inf"},
	{"weights all 0", "balanced {\n quality_weight 0\n cost_weight 0\n latency_weight 0\n}",
		`{"quality_weight":0,"cost_weight":0,"latency_weight":0}`,
		"balanced: quality_weight, cost_weight and latency_weight are all 0"},
	{"balanced expected_output", "balanced {\n expected_output -5\n}", `{"expected_output":-5}`,
		"balanced: expected_output must not be negative, got -5"},
	{"balanced min_samples", "balanced {\n min_samples -1\n}", `{"min_samples":-1}`,
		"balanced: min_samples must not be negative, got -1"},

	// rules
	{"rule without models", "rules {\n rule a {\n  keywords x\n }\n}",
		`{"rules":[{"name":"a","when":{"keywords":["x"]}}]}`, "rule a has no models"},
	{"rule without block", "rules {\n rule a\n}", `{"rules":[{"name":"a"}]}`, "rule a has no models"},
	{"duplicate rule names", "rules {\n rule a {\n  models m\n }\n rule a {\n  models n\n }\n}",
		`{"rules":[{"name":"a","models":["m"]},{"name":"a","models":["n"]}]}`, "duplicate rule name 'a'"},
	{"reserved rule name", "rules {\n rule default {\n  models m\n }\n}",
		`{"rules":[{"name":"default","models":["m"]}]}`, "rule #1: the name 'default' is reserved"},
	{"empty keyword", "rules {\n rule a {\n  keywords x \" \"\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"keywords":["x"," "]},"models":["m"]}]}`, "rule a: keywords: empty keyword"},
	{"bad regex", "rules {\n rule a {\n  regex (unclosed\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"regex":"(unclosed"},"models":["m"]}]}`, "rule a: invalid regex '(unclosed'"},
	{"bad scope", "rules {\n rule a {\n  scope all\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"scope":"all"},"models":["m"]}]}`, "rule a: unknown scope 'all'"},
	{"negative min_tokens", "rules {\n rule a {\n  min_tokens -1\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"min_tokens":-1},"models":["m"]}]}`, "rule a: min_tokens must not be negative, got -1"},
	{"min_tokens above max_tokens", "rules {\n rule a {\n  min_tokens 10\n  max_tokens 5\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"min_tokens":10,"max_tokens":5},"models":["m"]}]}`, "rule a: min_tokens 10 exceeds max_tokens 5"},
	{"bad header regex", "rules {\n rule a {\n  header_regex X (\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"header_regex":{"X":"("}},"models":["m"]}]}`, "rule a: header_regex X: invalid regex '('"},
	{"unknown operator", "rules {\n rule a {\n  field x $like y\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"fields":{"x":{"$like":"y"}}},"models":["m"]}]}`,
		"rule a: field x: unknown operator '$like' (want $eq, $ne"},
	{"$gt object", "rules {\n rule a {\n  field x $gt {\"a\":1}\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"fields":{"x":{"$gt":{"a":1}}}},"models":["m"]}]}`,
		"rule a: field x: $gt takes a number or a string"},
	{"bad $regex", "rules {\n rule a {\n  field x $regex (\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"fields":{"x":{"$regex":"("}}},"models":["m"]}]}`,
		"rule a: field x: invalid regex '('"},
	{"bad nested regex", "rules {\n rule a {\n  or {\n   regex [\n   tools\n  }\n  models m\n }\n}",
		`{"rules":[{"name":"a","when":{"or":[{"regex":"["},{"tools":true}]},"models":["m"]}]}`, "rule a: invalid regex '['"},
	{"empty default", "rules {\n default\n}", `{"default":{}}`, "default has neither models nor params"},

	// difficulty
	{"unknown weight", "difficulty {\n weights size 1\n}", `{"weights":{"size":1}}`,
		`difficulty: weights: unknown dimension "size"`},
	{"negative weight", "difficulty {\n weights length -1\n}", `{"weights":{"length":-1}}`,
		"difficulty: weights: length must be a finite number of at least 0, got -1"},
	{"weights all 0", "difficulty {\n weights length 0 reasoning 0 structure 0 domain 0 context 0\n}",
		`{"weights":{"context":0,"domain":0,"length":0,"reasoning":0,"structure":0}}`,
		"difficulty: weights: at least one weight must be positive"},
	{"negative tokens", "difficulty {\n long_tokens -5\n}", `{"long_tokens":-5}`,
		"difficulty: long_tokens must not be negative, got -5"},
	{"cues of a dimension without", "difficulty {\n cues length long\n}", `{"cues":{"length":["long"]}}`,
		"difficulty: cues: dimension length has no cues"},
	{"unknown cue dimension", "difficulty {\n add_cues style fancy\n}", `{"add_cues":{"style":["fancy"]}}`,
		`difficulty: add_cues: unknown cue dimension "style"`},
	{"star inside a cue", "difficulty {\n add_cues domain a*b\n}", `{"add_cues":{"domain":["a*b"]}}`,
		`difficulty: add_cues: domain cue "a*b": * is only allowed at the end`},
	{"empty cue", "difficulty {\n cues domain *\n}", `{"cues":{"domain":["*"]}}`,
		`difficulty: cues: domain cue "*": empty`},
	{"tier above 1", "difficulty {\n tier 1.5 big\n}", `{"tiers":[{"min":1.5,"models":["big"]}]}`,
		"difficulty: tier 0: min must be from 0 to 1, got 1.5"},
	{"two tiers at one score", "difficulty {\n tier 0.2 a\n tier 0.2 b\n}",
		`{"tiers":[{"min":0.2,"models":["a"]},{"min":0.2,"models":["b"]}]}`,
		"difficulty: tier 1: another tier has min 0.2"},
	{"no tiers", "difficulty", `{}`, "difficulty: at least one tier is required"},
}

// TestValueChecks loads each of valueCases the way Caddy does: the
// Caddyfile adapted to its module (which must parse), then provisioned
// and validated; the JSON by ctx.LoadModuleByID. Both must fail with
// the same error, naming the setting.
func TestValueChecks(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	for _, tt := range valueCases {
		t.Run(tt.name, func(t *testing.T) {
			id := strategies.Namespace + "." + strings.Fields(tt.caddyfile)[0]
			mi, err := caddy.GetModule(id)
			if err != nil {
				t.Fatal(err)
			}

			// The Caddyfile parses; the value is Validate's to judge.
			mod := mi.New()
			if err := mod.(caddyfile.Unmarshaler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.caddyfile)); err != nil {
				t.Fatalf("Caddyfile does not parse: %v", err)
			}
			if tt.json != "" {
				equiv := mi.New()
				if err := json.Unmarshal([]byte(tt.json), equiv); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(mod, equiv) {
					got, _ := json.Marshal(mod)
					t.Fatalf("the Caddyfile adapts to %s, not to the JSON %s", got, tt.json)
				}
			}
			cfErr := provisionAndValidate(ctx, mod)
			if cfErr == nil || !strings.Contains(cfErr.Error(), tt.want) {
				t.Fatalf("Caddyfile: error = %v, want one containing %q", cfErr, tt.want)
			}

			// The JSON fails the same way.
			if tt.json == "" {
				return
			}
			_, err = ctx.LoadModuleByID(id, json.RawMessage(tt.json))
			if err == nil || !strings.Contains(err.Error(), cfErr.Error()) {
				t.Errorf("JSON: error = %v, want one containing %q", err, cfErr)
			}
		})
	}
}

// provisionAndValidate provisions and validates mod as Caddy does when
// it loads a module.
func provisionAndValidate(ctx caddy.Context, mod caddy.Module) error {
	if p, ok := mod.(caddy.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			return err
		}
	}
	if v, ok := mod.(caddy.Validator); ok {
		return v.Validate()
	}
	return nil
}
