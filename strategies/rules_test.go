package strategies

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// rulesLoad decodes, provisions and validates a rules config.
func rulesLoad(t testing.TB, cfg string) *Rules {
	t.Helper()
	r, err := rulesTryLoad(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rulesTryLoad(cfg string) (*Rules, error) {
	var r Rules
	if err := json.Unmarshal([]byte(cfg), &r); err != nil {
		return nil, err
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := r.Provision(ctx); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// rulesCands returns candidates of the given models.
func rulesCands(models ...string) []Candidate {
	cands := make([]Candidate, len(models))
	for i, m := range models {
		cands[i] = Candidate{Model: m}
	}
	return cands
}

func rulesModels(cands []Candidate) string {
	ms := make([]string, len(cands))
	for i, c := range cands {
		ms[i] = c.Model
	}
	return strings.Join(ms, " ")
}

// rulesChat builds the view of a chat request with the given user
// message, extra top-level members (`"k":v,...` or "") and header
// fields (name, value, name, value...).
func rulesChat(user, extra string, hdr ...string) *Request {
	u, _ := json.Marshal(user)
	if extra != "" {
		extra = "," + extra
	}
	body := `{"model":"auto","temperature":0.3,` +
		`"metadata":{"tier":"gold","level":3,"score":2.5,"beta":true,"tags":["a","b"],"nothing":null},` +
		`"messages":[{"role":"system","content":"You answer questions about Databases."},` +
		`{"role":"user","content":` + string(u) + `}]` + extra + `}`
	req := BuildRequest("/chat/completions", []byte(body))
	req.Header = http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return &req
}

func TestRulesSelect(t *testing.T) {
	cfg := `{"rules":[
		{"name":"greeting","when":{"keywords":["hello"]},"models":["small"],"params":{"temperature":0.3,"max_tokens":100}},
		{"name":"absent","when":{"keywords":["code"]},"models":["missing1","missing2"]},
		{"name":"code","when":{"keywords":["code"]},"models":["large","medium"]},
		{"name":"also_hello","when":{"keywords":["hello"]},"models":["large"]}
	],"default":{"models":["medium"],"params":{"temperature":0.7}}}`
	r := rulesLoad(t, cfg)
	tests := []struct {
		name   string
		user   string
		cands  []string
		reason string
		order  string
		params string
	}{
		{"first match wins", "hello code", []string{"large", "medium", "small"}, "rule=greeting", "small large medium", `{"max_tokens":100,"temperature":0.3}`},
		{"rule with absent models skipped", "some code", []string{"small", "medium", "large"}, "rule=code", "large medium small", ""},
		{"models in rule order, fallbacks kept", "code", []string{"medium", "x", "large", "y"}, "rule=code", "large medium x y", ""},
		{"several candidates per model", "code", []string{"medium", "large", "x", "large"}, "rule=code", "large large medium x", ""},
		{"rule skipped when its model is absent", "hello", []string{"large", "medium"}, "rule=also_hello", "large medium", ""},
		{"default", "nothing", []string{"small", "large", "medium"}, "rule=default", "medium small large", `{"temperature":0.7}`},
		{"default, model absent", "nothing", []string{"small", "large"}, "rule=default", "small large", `{"temperature":0.7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := rulesCands(tt.cands...)
			d := r.Select(rulesChat(tt.user, ""), cands)
			if d.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", d.Reason, tt.reason)
			}
			if got := rulesModels(cands); got != tt.order {
				t.Errorf("order = %q, want %q", got, tt.order)
			}
			var params string
			if d.Params != nil {
				b, _ := json.Marshal(d.Params)
				params = string(b)
			}
			if params != tt.params {
				t.Errorf("params = %s, want %s", params, tt.params)
			}
		})
	}

	// without a default: no match leaves the order alone
	r = rulesLoad(t, `{"rules":[{"name":"a","when":{"keywords":["zzz"]},"models":["b"]}]}`)
	cands := rulesCands("a", "b")
	d := r.Select(rulesChat("hello", ""), cands)
	if d.Reason != "rules:no_match" || d.Params != nil || rulesModels(cands) != "a b" {
		t.Errorf("no match: %+v, order %q", d, rulesModels(cands))
	}
	// no rules at all
	r = rulesLoad(t, `{}`)
	if d := r.Select(rulesChat("hello", ""), cands); d.Reason != "rules:no_match" {
		t.Errorf("empty rules: reason %q", d.Reason)
	}
	// a rule without a condition always holds
	r = rulesLoad(t, `{"rules":[{"name":"all","models":["b"]}]}`)
	if d := r.Select(rulesChat("hello", ""), cands); d.Reason != "rule=all" || rulesModels(cands) != "b a" {
		t.Errorf("unconditional rule: %q, order %q", d.Reason, rulesModels(cands))
	}
}

// Each Select call evaluates on its own state, so concurrent calls on
// different requests do not interfere.
func TestRulesConcurrent(t *testing.T) {
	r := rulesLoad(t, `{"rules":[
		{"name":"zh","when":{"keywords":["你好"]},"models":["a"]},
		{"name":"en","when":{"keywords":["hello"],"scope":"conversation"},"models":["b"]}],
		"default":{"models":["c"]}}`)
	reqs := map[string]*Request{
		"rule=zh":      rulesChat("你好", ""),
		"rule=en":      rulesChat("HELLO", ""),
		"rule=default": rulesChat("bye", ""),
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				for want, req := range reqs {
					if d := r.Select(req, rulesCands("c", "b", "a")); d.Reason != want {
						t.Errorf("reason = %q, want %q", d.Reason, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestRulesValidate checks the values Validate rejects; Provision, which
// validates before it compiles, rejects them too.
func TestRulesValidate(t *testing.T) {
	tests := []struct{ name, cfg, want string }{
		{"bad regex", `{"rules":[{"name":"a","when":{"regex":"(unclosed"},"models":["m"]}]}`, "rule a: invalid regex '(unclosed'"},
		{"bad nested regex", `{"rules":[{"name":"a","when":{"or":[{"regex":"["}]},"models":["m"]}]}`, "invalid regex '['"},
		{"bad header regex", `{"rules":[{"name":"a","when":{"header_regex":{"X":"("}},"models":["m"]}]}`, "header_regex X: invalid regex"},
		{"unknown operator", `{"rules":[{"name":"a","when":{"fields":{"x":{"$like":"y"}}},"models":["m"]}]}`, "field x: unknown operator '$like'"},
		{"$in without list", `{"rules":[{"name":"a","when":{"fields":{"x":{"$in":"y"}}},"models":["m"]}]}`, "$in takes a list"},
		{"$regex without string", `{"rules":[{"name":"a","when":{"fields":{"x":{"$regex":1}}},"models":["m"]}]}`, "$regex takes a pattern string"},
		{"$regex bad", `{"rules":[{"name":"a","when":{"fields":{"x":{"$regex":"("}}},"models":["m"]}]}`, "invalid regex"},
		{"$gt object", `{"rules":[{"name":"a","when":{"fields":{"x":{"$gt":{}}}},"models":["m"]}]}`, "$gt takes a number or a string"},
		{"field without operators", `{"rules":[{"name":"a","when":{"fields":{"x":{}}},"models":["m"]}]}`, "field x: no operators"},
		{"bad scope", `{"rules":[{"name":"a","when":{"scope":"everything"},"models":["m"]}]}`, "unknown scope 'everything'"},
		{"empty keyword", `{"rules":[{"name":"a","when":{"keywords":[" "]},"models":["m"]}]}`, "empty keyword"},
		{"min above max", `{"rules":[{"name":"a","when":{"min_tokens":10,"max_tokens":5},"models":["m"]}]}`, "min_tokens 10 exceeds max_tokens 5"},
		{"header without values", `{"rules":[{"name":"a","when":{"header":{"X":[]}},"models":["m"]}]}`, "header X: no values"},
		{"null or", `{"rules":[{"name":"a","when":{"or":[null]},"models":["m"]}]}`, "or: condition #1 is empty"},
		{"no models", `{"rules":[{"name":"a"}]}`, "rule a has no models"},
		{"no name", `{"rules":[{"models":["m"]}]}`, "a rule needs a name"},
		{"name with space", `{"rules":[{"name":"a b","models":["m"]}]}`, "has spaces"},
		{"name default", `{"rules":[{"name":"default","models":["m"]}]}`, "reserved"},
		{"duplicate names", `{"rules":[{"name":"a","models":["m"]},{"name":"a","models":["n"]}]}`, "duplicate rule name 'a'"},
		{"null rule", `{"rules":[null]}`, "rule #1 is empty"},
		{"empty model", `{"rules":[{"name":"a","models":[""]}]}`, "empty model name"},
		{"empty default", `{"default":{}}`, "default has neither models nor params"},
		{"empty param path", `{"rules":[{"name":"a","models":["m"],"params":{"":1}}]}`, "param with an empty path"},
		{"negative max_tokens", `{"rules":[{"name":"a","when":{"max_tokens":-1},"models":["m"]}]}`, "max_tokens must not be negative"},
		{"header without name", `{"rules":[{"name":"a","when":{"header":{"":["x"]}},"models":["m"]}]}`, "header with an empty field name"},
		{"field without path", `{"rules":[{"name":"a","when":{"fields":{"":{"$eq":1}}},"models":["m"]}]}`, "field with an empty path"},
		{"null and", `{"rules":[{"name":"a","when":{"and":[{"tools":true},null]},"models":["m"]}]}`, "and: condition #2 is empty"},
		{"bad regex under not", `{"rules":[{"name":"a","when":{"not":{"and":[{"regex":"("}]}},"models":["m"]}]}`, "rule a: invalid regex '('"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Rules
			if err := json.Unmarshal([]byte(tt.cfg), &r); err != nil {
				t.Fatal(err)
			}
			if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate: error = %v, want one containing %q", err, tt.want)
			}
			if _, err := rulesTryLoad(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("load: error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRulesJSONRoundTrip(t *testing.T) {
	var r Rules
	if err := json.Unmarshal([]byte(rulesExampleJSON), &r); err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != rulesExampleJSON {
		t.Errorf("round trip =\n%s\nwant\n%s", got, rulesExampleJSON)
	}
	// Provisioning adds nothing to the JSON.
	p := rulesLoad(t, rulesExampleJSON)
	if got, _ := json.Marshal(p); string(got) != rulesExampleJSON {
		t.Errorf("provisioned =\n%s\nwant\n%s", got, rulesExampleJSON)
	}
}

func TestRulesModule(t *testing.T) {
	mi, err := caddy.GetModule(Namespace + ".rules")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mi.New().(*Rules); !ok {
		t.Errorf("New() = %T", mi.New())
	}
}

// rulesBenchConfig is ten rules of every kind, none of which matches
// the benchmark prompts, so that Select evaluates all of them before the
// default.
const rulesBenchConfig = `{"rules":[
	{"name":"greeting","when":{"keywords":["hello","hi there","你好","thanks"],"max_tokens":20},"models":["small"],"params":{"temperature":0.3}},
	{"name":"code","when":{"regex":"(?i)\\b(func|def|class|SELECT)\\b","keywords_all":["refactor","golang"]},"models":["large","medium"]},
	{"name":"vip","when":{"header":{"X-Tier":["platinum"]}},"models":["best"]},
	{"name":"tier","when":{"fields":{"metadata.user_tier":{"$in":["platinum","diamond"]}}},"models":["best"]},
	{"name":"tools","when":{"or":[{"tools":true},{"images":true}]},"models":["large"]},
	{"name":"json","when":{"json_mode":true},"models":["medium"]},
	{"name":"math","when":{"keywords":["integral","derivative","theorem","微积分","证明"]},"models":["large"]},
	{"name":"translate","when":{"keywords":["translate","翻译"],"scope":"conversation"},"models":["medium"]},
	{"name":"long","when":{"min_tokens":100000,"scope":"conversation"},"models":["long"]},
	{"name":"sql","when":{"and":[{"keywords":["sql"]},{"not":{"keywords":["nosql"]}}]},"models":["medium"]}
],"default":{"models":["small"]}}`

func BenchmarkRules(b *testing.B) {
	r := rulesLoad(b, rulesBenchConfig)
	template := rulesCands("large", "medium", "small", "best", "long")
	cands := make([]Candidate, len(template))
	for _, lang := range []string{"en", "zh"} {
		for _, size := range reqBenchSizes {
			req := BuildRequest("/chat/completions", reqBenchBody(reqBenchText(size.n, lang == "zh")))
			req.Header = http.Header{"X-Tier": {"gold"}}
			b.Run(fmt.Sprintf("%s/%s", lang, size.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					copy(cands, template)
					if d := r.Select(&req, cands); d.Reason != "rule=default" {
						b.Fatal(d.Reason)
					}
				}
			})
		}
	}
}

// The rules must all be evaluated in the benchmark.
func TestRulesBenchConfig(t *testing.T) {
	r := rulesLoad(t, rulesBenchConfig)
	if len(r.Rules) != 10 {
		t.Fatalf("%d rules", len(r.Rules))
	}
	for _, zh := range []bool{false, true} {
		req := BuildRequest("/chat/completions", reqBenchBody(reqBenchText(4<<10, zh)))
		if d := r.Select(&req, rulesCands("large", "medium", "small", "best", "long")); d.Reason != "rule=default" {
			t.Errorf("zh=%v: reason %q", zh, d.Reason)
		}
	}
}
