package strategies

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// rulesExample is the Caddyfile of the design, with every subdirective.
const rulesExample = `rules {
	rule greeting {
		keywords hello hi 你好 thanks
		max_tokens 20
		models small
		set temperature 0.3
		set max_tokens 100
	}
	rule code {
		regex (?i)\b(func|def|class|SELECT)\b
		keywords_all refactor function
		scope conversation
		models large medium
	}
	rule vip {
		header X-Tier gold
		field metadata.user_tier $in ["gold","platinum"]
		models best
	}
	rule either {
		or {
			tools
			images
		}
		models large
	}
	rule rest {
		min_tokens 5
		tools false
		images false
		json_mode true
		header x-team a b
		header_regexp X-Tier ^(gold|silver)$
		field metadata.level $gte 3
		field metadata.level $lt 10
		field metadata.tier $nin bronze "42" 7
		field metadata.name $regex ^ann
		field user "123"
		and {
			scope system
			keywords Databases
		}
		not {
			keywords spam
		}
		or {
			scope conversation
			keywords x
			and {
				regex y
				max_tokens 9
			}
		}
		models medium
		set metadata.routed "yes"
		set stop ["\n\n"]
		set user anna
	}
	default small {
		set temperature 0.5
	}
}`

const rulesExampleJSON = `{"rules":[` +
	`{"name":"greeting","when":{"keywords":["hello","hi","你好","thanks"],"max_tokens":20},"models":["small"],"params":{"max_tokens":100,"temperature":0.3}},` +
	`{"name":"code","when":{"scope":"conversation","keywords_all":["refactor","function"],"regex":"(?i)\\b(func|def|class|SELECT)\\b"},"models":["large","medium"]},` +
	`{"name":"vip","when":{"header":{"X-Tier":["gold"]},"fields":{"metadata.user_tier":{"$in":["gold","platinum"]}}},"models":["best"]},` +
	`{"name":"either","when":{"or":[{"tools":true},{"images":true}]},"models":["large"]},` +
	`{"name":"rest","when":{"min_tokens":5,"tools":false,"images":false,"json_mode":true,` +
	`"header":{"X-Team":["a","b"]},"header_regex":{"X-Tier":"^(gold|silver)$"},` +
	`"fields":{"metadata.level":{"$gte":3,"$lt":10},"metadata.name":{"$regex":"^ann"},"metadata.tier":{"$nin":["bronze","42",7]},"user":{"$eq":"123"}},` +
	`"and":[{"scope":"system","keywords":["Databases"]},{"scope":"conversation","or":[{"keywords":["x"]},{"regex":"y","max_tokens":9}]}],` +
	`"not":{"keywords":["spam"]}},` +
	`"models":["medium"],"params":{"metadata.routed":"yes","stop":["\n\n"],"user":"anna"}}],` +
	`"default":{"models":["small"],"params":{"temperature":0.5}}}`

func TestRulesCaddyfile(t *testing.T) {
	var r Rules
	if err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser(rulesExample)); err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != rulesExampleJSON {
		t.Errorf("config =\n%s\nwant\n%s", got, rulesExampleJSON)
	}

	// The parsed config provisions and routes.
	p := rulesLoad(t, string(got))
	cands := rulesCands("large", "small", "medium", "best")
	d := p.Select(rulesChat("Hi!", ""), cands)
	if d.Reason != "rule=greeting" || rulesModels(cands) != "small large medium best" {
		t.Errorf("greeting: %q %q", d.Reason, rulesModels(cands))
	}
	// "this" would match the greeting's "hi": keywords match substrings.
	d = p.Select(rulesChat("this", ""), rulesCands("large", "small"))
	if d.Reason != "rule=greeting" {
		t.Errorf("substring: %q", d.Reason)
	}
	d = p.Select(rulesChat("refactor the function: def f(): pass", ""), cands)
	if d.Reason != "rule=code" || rulesModels(cands) != "large medium small best" {
		t.Errorf("code: %q %q", d.Reason, rulesModels(cands))
	}
	d = p.Select(rulesChat("what now", `"metadata":{"user_tier":"platinum"}`, "X-Tier", "gold"), cands)
	if d.Reason != "rule=vip" || cands[0].Model != "best" {
		t.Errorf("vip: %q %q", d.Reason, rulesModels(cands))
	}
	d = p.Select(rulesChat("what now", ""), cands)
	if d.Reason != "rule=default" || cands[0].Model != "small" {
		t.Errorf("default: %q %q", d.Reason, rulesModels(cands))
	}
}

// The tokens of a single-line `rules` with no block, and the segment
// handling of a parent directive.
func TestRulesCaddyfileSegment(t *testing.T) {
	d := caddyfile.NewTestDispenser(`route auto {
		strategy rules {
			rule a {
				keywords x
				models m
			}
		}
		models a b
	}`)
	d.Next() // route
	d.NextArg()
	var rest []string
	var mod caddyfile.Unmarshaler
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() == "strategy" {
			d.NextArg()
			var err error
			if mod, err = caddyfile.UnmarshalModule(d, Namespace+"."+d.Val()); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rest = append(append(rest, d.Val()), d.RemainingArgs()...)
	}
	r, ok := mod.(*Rules)
	if !ok || len(r.Rules) != 1 || r.Rules[0].Name != "a" {
		t.Fatalf("strategy = %#v", mod)
	}
	if strings.Join(rest, " ") != "models a b" {
		t.Errorf("rest of block = %q", rest)
	}
}

// TestRulesCaddyfileErrors checks the parser's syntax errors, which
// carry their position. The values Validate rejects are in
// TestValueChecks, as Caddyfile and as JSON.
func TestRulesCaddyfileErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"argument", `rules x`, "wrong argument count"},
		{"unknown subdirective", "rules {\n\tfoo\n}", "unrecognized subdirective: foo"},
		{"unknown rule subdirective", "rules {\n\trule a {\n\t\tfoo bar\n\t\tmodels m\n\t}\n}", "unrecognized subdirective: foo"},
		{"rule without name", "rules {\n\trule {\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"operator without value", "rules {\n\trule a {\n\t\tfield x $eq\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"bad $in array", "rules {\n\trule a {\n\t\tfield x $in [1,\n\t\tmodels m\n\t}\n}", "field x: $in takes a list"},
		{"$eq with several values", "rules {\n\trule a {\n\t\tfield x a b\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"operator twice", "rules {\n\trule a {\n\t\tfield x $eq 1\n\t\tfield x $eq 2\n\t\tmodels m\n\t}\n}", "operator $eq given twice"},
		{"two scopes", "rules {\n\trule a {\n\t\tscope system\n\t\tscope conversation\n\t\tmodels m\n\t}\n}", "scope already set"},
		{"bad tokens", "rules {\n\trule a {\n\t\tmax_tokens many\n\t\tmodels m\n\t}\n}", "invalid max_tokens value 'many'"},
		{"tokens twice", "rules {\n\trule a {\n\t\tmax_tokens 1\n\t\tmax_tokens 2\n\t\tmodels m\n\t}\n}", "max_tokens already set"},
		{"bad bool", "rules {\n\trule a {\n\t\ttools maybe\n\t\tmodels m\n\t}\n}", "invalid tools value 'maybe'"},
		{"keywords without words", "rules {\n\trule a {\n\t\tkeywords\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"header without value", "rules {\n\trule a {\n\t\theader X\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"empty or", "rules {\n\trule a {\n\t\tor {\n\t\t}\n\t\tmodels m\n\t}\n}", "or block has no conditions"},
		{"empty and", "rules {\n\trule a {\n\t\tand {\n\t\t}\n\t\tmodels m\n\t}\n}", "and block has no conditions"},
		{"action in or", "rules {\n\trule a {\n\t\tor {\n\t\t\tmodels m\n\t\t}\n\t\tmodels m\n\t}\n}", "unrecognized condition: models"},
		{"set twice", "rules {\n\trule a {\n\t\tmodels m\n\t\tset t 1\n\t\tset t 2\n\t}\n}", "param 't' set twice"},
		{"set without value", "rules {\n\trule a {\n\t\tmodels m\n\t\tset t\n\t}\n}", "wrong argument count"},
		{"models without models", "rules {\n\trule a {\n\t\tmodels\n\t}\n}", "wrong argument count"},
		{"two defaults", "rules {\n\tdefault a\n\tdefault b\n}", "default already specified"},
		{"default condition", "rules {\n\tdefault a {\n\t\tkeywords x\n\t}\n}", "unrecognized subdirective: keywords"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Rules
			err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %q has no position", err)
			}
		})
	}
}
