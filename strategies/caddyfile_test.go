package strategies_test

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// TestUnmarshalCaddyfile checks the parsers: the JSON they build, and
// their syntax errors. Values are not theirs to judge: TestValueChecks
// holds the values Validate rejects, as Caddyfile and as JSON.
func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		input   string
		want    string // JSON of the module after parsing
		wantErr string // substring of the error
	}{
		// Strategies without options.
		{input: `fallback`, want: `{}`},
		{input: `fallback {
		}`, want: `{}`},
		{input: `fallback now`, wantErr: "wrong argument count"},
		{input: `fallback {
			order a b
		}`, wantErr: "unrecognized subdirective: order"},
		{input: `random`, want: `{}`},
		{input: `random 1`, wantErr: "wrong argument count"},
		{input: `random {
			seed 1
		}`, wantErr: "unrecognized subdirective: seed"},
		{input: `weighted`, want: `{}`},
		{input: `weighted 1 2 3`, wantErr: "wrong argument count"},
		{input: `weighted {
			weights 1 2
		}`, wantErr: "unrecognized subdirective: weights"},
		{input: `round_robin`, want: `{}`},
		{input: `round_robin {
			start 2
		}`, wantErr: "unrecognized subdirective: start"},
		{input: `least_busy`, want: `{}`},
		{input: `least_busy x`, wantErr: "wrong argument count"},
		{input: `best_quality`, want: `{}`},
		{input: `best_quality {
			expected_output 10
		}`, wantErr: "unrecognized subdirective: expected_output"},

		// lowest_latency and highest_throughput.
		{input: `lowest_latency`, want: `{}`},
		{input: `lowest_latency {
			min_samples 5
			explore 0
		}`, want: `{"min_samples":5,"explore":0}`},
		{input: `lowest_latency {
			explore 0.25
		}`, want: `{"explore":0.25}`},
		{input: `lowest_latency {
			explore
		}`, wantErr: "wrong argument count"},
		{input: `lowest_latency {
			explore often
		}`, wantErr: "invalid explore value 'often': want a number"},
		{input: `lowest_latency {
			explore 1.5
		}`, want: `{"explore":1.5}`}, // parses; Validate rejects it
		{input: `lowest_latency {
			min_samples 3 4
		}`, wantErr: "wrong argument count"},
		{input: `lowest_latency {
			min_samples 2.5
		}`, wantErr: "invalid min_samples value '2.5': want an integer"},
		{input: `lowest_latency {
			window 10
		}`, wantErr: "unrecognized subdirective: window"},
		{input: `lowest_latency ttft`, wantErr: "wrong argument count"},
		{input: `highest_throughput {
			min_samples 10
			explore 0.1
		}`, want: `{"min_samples":10,"explore":0.1}`},
		{input: `highest_throughput {
			latency 1
		}`, wantErr: "unrecognized subdirective: latency"},

		// cheapest.
		{input: `cheapest`, want: `{}`},
		{input: `cheapest {
			expected_output 1024
		}`, want: `{"expected_output":1024}`},
		{input: `cheapest {
			expected_output many
		}`, wantErr: "invalid expected_output value 'many'"},
		{input: `cheapest {
			expected_output
		}`, wantErr: "wrong argument count"},
		{input: `cheapest {
			max_price 3
		}`, wantErr: "unrecognized subdirective: max_price"},

		// balanced.
		{input: `balanced`, want: `{}`},
		{input: `balanced {
			quality_weight  0.6
			cost_weight     0
			latency_weight  0.4
			expected_output 512
			min_samples     5
		}`, want: `{"quality_weight":0.6,"cost_weight":0,"latency_weight":0.4,"expected_output":512,"min_samples":5}`},
		{input: `balanced {
			quality_weight 2
		}`, want: `{"quality_weight":2}`},
		{input: `balanced {
			quality_weight
		}`, wantErr: "wrong argument count"},
		{input: `balanced {
			error_weight 1
		}`, wantErr: "unrecognized subdirective: error_weight"},
		{input: `balanced 1 2 3`, wantErr: "wrong argument count"},
	}
	for _, tt := range tests {
		name := strings.Fields(tt.input)[0]
		t.Run(strings.Join(strings.Fields(tt.input), " "), func(t *testing.T) {
			mi, err := caddy.GetModule(strategies.Namespace + "." + name)
			if err != nil {
				t.Fatal(err)
			}
			mod := mi.New()
			err = mod.(caddyfile.Unmarshaler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(mod)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("config = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestUnmarshalModuleSegment parses a strategy the way a parent
// directive does, with caddyfile.UnmarshalModule positioned on the
// strategy name, and checks that the parent can go on after it.
func TestUnmarshalModuleSegment(t *testing.T) {
	d := caddyfile.NewTestDispenser(`route auto {
		strategy lowest_latency {
			explore 0
		}
		models a b
	}`)
	var got []string
	var strategy caddyfile.Unmarshaler
	d.Next() // route
	d.NextArg()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "strategy":
			if !d.NextArg() {
				t.Fatal("no strategy name")
			}
			var err error
			strategy, err = caddyfile.UnmarshalModule(d, strategies.Namespace+"."+d.Val())
			if err != nil {
				t.Fatal(err)
			}
		default:
			got = append(got, d.Val())
			got = append(got, d.RemainingArgs()...)
		}
	}
	l, ok := strategy.(*strategies.LowestLatency)
	if !ok || l.Explore == nil || *l.Explore != 0 {
		t.Fatalf("strategy = %#v", strategy)
	}
	if strings.Join(got, " ") != "models a b" {
		t.Errorf("rest of block = %q", got)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  string
	}{
		{"fallback", `{}`},
		{"random", `{}`},
		{"weighted", `{}`},
		{"round_robin", `{}`},
		{"least_busy", `{}`},
		{"best_quality", `{}`},
		{"lowest_latency", `{"min_samples":4,"explore":0}`},
		{"highest_throughput", `{"min_samples":1,"explore":0.5}`},
		{"cheapest", `{"expected_output":100}`},
		{"balanced", `{"quality_weight":1,"cost_weight":0,"latency_weight":0.25,"expected_output":64,"min_samples":2}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mi, err := caddy.GetModule(strategies.Namespace + "." + tt.name)
			if err != nil {
				t.Fatal(err)
			}
			mod := mi.New()
			if err := json.Unmarshal([]byte(tt.cfg), mod); err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(mod)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.cfg {
				t.Errorf("round trip = %s, want %s", out, tt.cfg)
			}
			again := mi.New()
			if err := json.Unmarshal(out, again); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, mod) {
				t.Errorf("decoded %#v, want %#v", again, mod)
			}
		})
	}
}

func TestProvisionDefaults(t *testing.T) {
	for _, tt := range []struct {
		name string
		want string
	}{
		{"lowest_latency", `{"min_samples":3,"explore":0.05}`},
		{"highest_throughput", `{"min_samples":3,"explore":0.05}`},
		{"cheapest", `{"expected_output":256}`},
		{"balanced", `{"quality_weight":0.5,"cost_weight":0.3,"latency_weight":0.2,"expected_output":256,"min_samples":3}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := selLoad(t, tt.name)
			got, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("provisioned = %s, want %s", got, tt.want)
			}
		})
	}
	// Explicit zeros survive provisioning.
	l := &strategies.LowestLatency{Explore: selF64(0)}
	if err := l.Provision(caddy.Context{}); err != nil || *l.Explore != 0 {
		t.Errorf("explore 0 provisioned to %v (%v)", *l.Explore, err)
	}
	b := &strategies.Balanced{CostWeight: selF64(0)}
	if err := b.Provision(caddy.Context{}); err != nil || *b.CostWeight != 0 {
		t.Errorf("cost_weight 0 provisioned to %v (%v)", *b.CostWeight, err)
	}
}

func TestValidate(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name    string
		v       caddy.Validator
		wantErr string
	}{
		{"lowest_latency ok", &strategies.LowestLatency{MinSamples: 1, Explore: selF64(1)}, ""},
		{"lowest_latency zero", &strategies.LowestLatency{}, ""},
		{"lowest_latency min_samples", &strategies.LowestLatency{MinSamples: -1}, "min_samples must not be negative"},
		{"lowest_latency explore low", &strategies.LowestLatency{Explore: selF64(-0.01)}, "explore must be from 0 to 1"},
		{"lowest_latency explore high", &strategies.LowestLatency{Explore: selF64(1.01)}, "explore must be from 0 to 1"},
		{"lowest_latency explore NaN", &strategies.LowestLatency{Explore: &nan}, "explore must be from 0 to 1"},
		{"highest_throughput ok", &strategies.HighestThroughput{Explore: selF64(0)}, ""},
		{"highest_throughput min_samples", &strategies.HighestThroughput{MinSamples: -3}, "highest_throughput: min_samples"},
		{"highest_throughput explore", &strategies.HighestThroughput{Explore: selF64(7)}, "highest_throughput: explore"},
		{"cheapest ok", &strategies.Cheapest{ExpectedOutput: 1}, ""},
		{"cheapest negative", &strategies.Cheapest{ExpectedOutput: -1}, "expected_output must not be negative"},
		{"balanced zero value", &strategies.Balanced{}, ""},
		{"balanced one weight", &strategies.Balanced{QualityWeight: selF64(1), CostWeight: selF64(0), LatencyWeight: selF64(0)}, ""},
		{"balanced two zero weights", &strategies.Balanced{CostWeight: selF64(0), LatencyWeight: selF64(0)}, ""},
		{"balanced all zero", &strategies.Balanced{QualityWeight: selF64(0), CostWeight: selF64(0), LatencyWeight: selF64(0)}, "are all 0"},
		{"balanced negative", &strategies.Balanced{CostWeight: selF64(-0.3)}, "cost_weight must be a finite number of at least 0"},
		{"balanced NaN", &strategies.Balanced{QualityWeight: &nan}, "quality_weight must be a finite number of at least 0"},
		{"balanced Inf", &strategies.Balanced{LatencyWeight: &inf}, "latency_weight must be a finite number of at least 0"},
		{"balanced expected_output", &strategies.Balanced{ExpectedOutput: -5}, "expected_output must not be negative"},
		{"balanced min_samples", &strategies.Balanced{MinSamples: -1}, "min_samples must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
