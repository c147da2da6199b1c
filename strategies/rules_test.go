package strategies

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/tokens"
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

func TestRulesConditions(t *testing.T) {
	long := strings.Repeat("word ", 100)
	plain := rulesChat("Hello, how are you?", "")
	tests := []struct {
		name string
		when string
		req  *Request
		want bool
	}{
		{"empty condition", `{}`, plain, true},

		// keywords
		{"keywords any", `{"keywords":["bye","HELLO"]}`, plain, true},
		{"keywords any none", `{"keywords":["bye","ciao"]}`, plain, false},
		{"keywords substring", `{"keywords":["ell"]}`, plain, true},
		{"keywords phrase", `{"keywords":["how are"]}`, plain, true},
		{"keywords_all", `{"keywords_all":["refactor","function"]}`, rulesChat("Please REFACTOR this Function", ""), true},
		{"keywords_all missing one", `{"keywords_all":["refactor","function"]}`, rulesChat("Please refactor this", ""), false},
		{"keywords any and all", `{"keywords":["please"],"keywords_all":["this","that"]}`, rulesChat("please this and that", ""), true},
		{"keywords any and all, any fails", `{"keywords":["thanks"],"keywords_all":["this","that"]}`, rulesChat("please this and that", ""), false},
		{"keywords chinese", `{"keywords":["你好"]}`, rulesChat("你好，世界", ""), true},
		{"keywords chinese none", `{"keywords":["再见"]}`, rulesChat("你好，世界", ""), false},
		{"keywords_all chinese", `{"keywords_all":["代码","重构"]}`, rulesChat("请帮我重构这段代码", ""), true},
		{"keywords_all chinese missing", `{"keywords_all":["代码","测试"]}`, rulesChat("请帮我重构这段代码", ""), false},
		{"keywords mixed scripts", `{"keywords":["SQL 查询"]}`, rulesChat("写一个 sql 查询", ""), true},
		{"keywords unicode case", `{"keywords":["ÉCOLE"]}`, rulesChat("à l'école", ""), true},
		{"keywords fullwidth case", `{"keywords":["ＡＢＣ"]}`, rulesChat("ａｂｃ", ""), true},
		{"keywords scope last_user", `{"keywords":["databases"]}`, plain, false},
		{"keywords scope conversation", `{"keywords":["databases"],"scope":"conversation"}`, plain, true},
		{"keywords scope system", `{"keywords":["databases"],"scope":"system"}`, plain, true},
		{"keywords scope system, user text", `{"keywords":["hello"],"scope":"system"}`, plain, false},

		// regex
		{"regex", `{"regex":"\\bfunc\\b"}`, rulesChat("write a func here", ""), true},
		{"regex no match", `{"regex":"\\bfunc\\b"}`, rulesChat("write a function", ""), false},
		{"regex case-sensitive", `{"regex":"SELECT"}`, rulesChat("select *", ""), false},
		{"regex (?i)", `{"regex":"(?i)\\b(func|def|class|SELECT)\\b"}`, rulesChat("SeLeCt * from t", ""), true},
		{"regex chinese", `{"regex":"翻译|translate"}`, rulesChat("请翻译这句话", ""), true},
		{"regex scope", `{"regex":"Databases","scope":"conversation"}`, plain, true},
		{"regex last_user", `{"regex":"Databases"}`, plain, false},

		// token bounds
		{"max_tokens short", `{"max_tokens":20}`, plain, true},
		{"max_tokens long", `{"max_tokens":20}`, rulesChat(long, ""), false},
		{"min_tokens long", `{"min_tokens":50}`, rulesChat(long, ""), true},
		{"min_tokens short", `{"min_tokens":50}`, plain, false},
		{"min and max", `{"min_tokens":2,"max_tokens":20}`, plain, true},
		{"min and max, below", `{"min_tokens":10,"max_tokens":20}`, plain, false},
		{"max_tokens conversation", `{"max_tokens":10,"scope":"conversation"}`, plain, false},
		{"min_tokens conversation", `{"min_tokens":10,"scope":"conversation"}`, plain, true},
		{"keywords and max_tokens", `{"keywords":["hello"],"max_tokens":20}`, rulesChat("hello "+long, ""), false},

		// flags
		{"tools true", `{"tools":true}`, rulesChat("x", `"tools":[{"type":"function","function":{"name":"f"}}]`), true},
		{"tools true, none", `{"tools":true}`, plain, false},
		{"tools false", `{"tools":false}`, plain, true},
		{"tools false, some", `{"tools":false}`, rulesChat("x", `"tools":[{"type":"function","function":{"name":"f"}}]`), false},
		{"images true", `{"images":true}`, rulesChat("x", `"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]`), true},
		{"images true, none", `{"images":true}`, plain, false},
		{"images false", `{"images":false}`, plain, true},
		{"json_mode true", `{"json_mode":true}`, rulesChat("x", `"response_format":{"type":"json_object"}`), true},
		{"json_mode true, none", `{"json_mode":true}`, plain, false},
		{"json_mode false", `{"json_mode":false}`, plain, true},
		{"json_mode false, set", `{"json_mode":false}`, rulesChat("x", `"response_format":{"type":"json_schema"}`), false},

		// headers
		{"header", `{"header":{"X-Tier":["gold"]}}`, rulesChat("x", "", "X-Tier", "gold"), true},
		{"header other value", `{"header":{"X-Tier":["gold"]}}`, rulesChat("x", "", "X-Tier", "silver"), false},
		{"header missing", `{"header":{"X-Tier":["gold"]}}`, plain, false},
		{"header one of values", `{"header":{"X-Tier":["gold","platinum"]}}`, rulesChat("x", "", "X-Tier", "platinum"), true},
		{"header one of request values", `{"header":{"X-Tier":["gold"]}}`, rulesChat("x", "", "X-Tier", "silver", "X-Tier", "gold"), true},
		{"header key case", `{"header":{"x-tier":["gold"]}}`, rulesChat("x", "", "X-TIER", "gold"), true},
		{"header exact", `{"header":{"X-Tier":["gold"]}}`, rulesChat("x", "", "X-Tier", "golden"), false},
		{"header two fields", `{"header":{"X-Tier":["gold"],"X-Team":["a"]}}`, rulesChat("x", "", "X-Tier", "gold"), false},
		{"header_regex", `{"header_regex":{"X-Tier":"^(gold|platinum)$"}}`, rulesChat("x", "", "X-Tier", "platinum"), true},
		{"header_regex no match", `{"header_regex":{"X-Tier":"^(gold|platinum)$"}}`, rulesChat("x", "", "X-Tier", "golden"), false},
		{"header_regex missing", `{"header_regex":{"X-Tier":".*"}}`, plain, false},

		// and, or, not
		{"or first", `{"or":[{"tools":true},{"images":false}]}`, plain, true},
		{"or none", `{"or":[{"tools":true},{"images":true}]}`, plain, false},
		{"and", `{"and":[{"keywords":["hello"]},{"tools":false}]}`, plain, true},
		{"and one fails", `{"and":[{"keywords":["hello"]},{"tools":true}]}`, plain, false},
		{"not", `{"not":{"tools":true}}`, plain, true},
		{"not fails", `{"not":{"keywords":["hello"]}}`, plain, false},
		{"fields and or", `{"keywords":["hello"],"or":[{"tools":true},{"header":{"X-Tier":["gold"]}}]}`, rulesChat("hello", "", "X-Tier", "gold"), true},
		{"fields and or, field fails", `{"keywords":["bye"],"or":[{"tools":true},{"header":{"X-Tier":["gold"]}}]}`, rulesChat("hello", "", "X-Tier", "gold"), false},
		{"nested", `{"or":[{"and":[{"keywords":["x"]},{"tools":true}]},{"and":[{"keywords":["hello"]},{"not":{"images":true}}]}]}`, plain, true},
		{"nested fails", `{"or":[{"and":[{"keywords":["x"]},{"tools":true}]},{"and":[{"keywords":["hello"]},{"not":{"images":false}}]}]}`, plain, false},
		{"scope inherited", `{"scope":"conversation","and":[{"keywords":["databases"]}]}`, plain, true},
		{"scope overridden", `{"scope":"conversation","and":[{"keywords":["databases"],"scope":"last_user"}]}`, plain, false},
		{"scope inherited by or", `{"scope":"system","or":[{"keywords":["hello"]},{"regex":"^You"}]}`, plain, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rulesLoad(t, `{"rules":[{"name":"r","when":`+tt.when+`,"models":["pick"]}]}`)
			cands := rulesCands("other", "pick")
			d := r.Select(tt.req, cands)
			got := d.Reason == "rule=r"
			if got != tt.want {
				t.Fatalf("matched = %v, want %v (reason %q)", got, tt.want, d.Reason)
			}
			want := "other pick"
			if tt.want {
				want = "pick other"
			} else if d.Reason != "rules:no_match" {
				t.Errorf("reason = %q, want rules:no_match", d.Reason)
			}
			if m := rulesModels(cands); m != want {
				t.Errorf("order = %q, want %q", m, want)
			}
		})
	}
}

func TestRulesFieldOperators(t *testing.T) {
	req := rulesChat("x", "")
	tests := []struct {
		path, op, val string
		want          bool
	}{
		{"metadata.tier", "$eq", `"gold"`, true},
		{"metadata.tier", "$eq", `"silver"`, false},
		{"metadata.level", "$eq", `3`, true},
		{"metadata.level", "$eq", `3.0`, true},
		{"metadata.level", "$eq", `"3"`, false},
		{"metadata.beta", "$eq", `true`, true},
		{"metadata.beta", "$eq", `false`, false},
		{"metadata.nothing", "$eq", `null`, true},
		{"metadata.tier", "$eq", `null`, false},
		{"metadata.tags", "$eq", `["a", "b"]`, true},
		{"metadata.tags", "$eq", `["b","a"]`, false},
		{"metadata.missing", "$eq", `"gold"`, false},

		{"metadata.tier", "$ne", `"silver"`, true},
		{"metadata.tier", "$ne", `"gold"`, false},
		{"metadata.level", "$ne", `"3"`, true},
		{"metadata.missing", "$ne", `"gold"`, true},

		{"metadata.level", "$gt", `2`, true},
		{"metadata.level", "$gt", `3`, false},
		{"metadata.level", "$gte", `3`, true},
		{"metadata.level", "$gte", `3.5`, false},
		{"metadata.level", "$lt", `4`, true},
		{"metadata.level", "$lt", `3`, false},
		{"metadata.level", "$lte", `3`, true},
		{"metadata.level", "$lte", `2.9`, false},
		{"metadata.score", "$gt", `2.25`, true},
		{"temperature", "$lte", `0.5`, true},
		{"temperature", "$gt", `0.5`, false},
		{"metadata.tier", "$gt", `"apple"`, true},
		{"metadata.tier", "$gt", `"zebra"`, false},
		{"metadata.tier", "$lt", `"h"`, true},
		{"metadata.tier", "$lte", `"gold"`, true},
		{"metadata.tier", "$gte", `"golden"`, false},
		{"metadata.level", "$gt", `"1"`, false}, // number vs string
		{"metadata.tier", "$gt", `1`, false},    // string vs number
		{"metadata.missing", "$gt", `1`, false},
		{"metadata.missing", "$lt", `1`, false},

		{"metadata.tier", "$in", `["gold","platinum"]`, true},
		{"metadata.tier", "$in", `["silver"]`, false},
		{"metadata.level", "$in", `[1,3]`, true},
		{"metadata.level", "$in", `["3"]`, false},
		{"metadata.missing", "$in", `["gold"]`, false},
		{"metadata.tier", "$in", `[]`, false},

		{"metadata.tier", "$nin", `["silver","bronze"]`, true},
		{"metadata.tier", "$nin", `["gold"]`, false},
		{"metadata.missing", "$nin", `["gold"]`, true},
		{"metadata.tier", "$nin", `[]`, true},

		{"metadata.tier", "$regex", `"^go"`, true},
		{"metadata.tier", "$regex", `"^si"`, false},
		{"metadata.level", "$regex", `"^3$"`, true},
		{"metadata.beta", "$regex", `"^true$"`, true},
		{"metadata.tags", "$regex", `"a"`, false},
		{"metadata.missing", "$regex", `".*"`, false},

		{"messages.#", "$eq", `2`, true},
		{"messages.1.role", "$eq", `"user"`, true},
		{`messages.#(role=="system").content`, "$regex", `"Databases"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.op+" "+tt.val, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"rules":[{"name":"r","when":{"fields":{%q:{%q:%s}}},"models":["pick"]}]}`, tt.path, tt.op, tt.val)
			r := rulesLoad(t, cfg)
			d := r.Select(req, rulesCands("other", "pick"))
			if got := d.Reason == "rule=r"; got != tt.want {
				t.Errorf("matched = %v, want %v", got, tt.want)
			}
		})
	}

	// several operators on one field: all must hold
	r := rulesLoad(t, `{"rules":[{"name":"r","when":{"fields":{"metadata.level":{"$gte":1,"$lt":3}}},"models":["pick"]}]}`)
	if d := r.Select(req, rulesCands("pick")); d.Reason != "rules:no_match" {
		t.Errorf("range [1,3) matched level 3")
	}
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

func TestRulesProvisionErrors(t *testing.T) {
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rulesTryLoad(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

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

func TestRulesCaddyfileErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"argument", `rules x`, "wrong argument count"},
		{"unknown subdirective", "rules {\n\tfoo\n}", "unrecognized subdirective: foo"},
		{"unknown rule subdirective", "rules {\n\trule a {\n\t\tfoo bar\n\t\tmodels m\n\t}\n}", "unrecognized subdirective: foo"},
		{"rule without name", "rules {\n\trule {\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"rule without models", "rules {\n\trule a {\n\t\tkeywords x\n\t}\n}", "rule a has no models"},
		{"rule without block", "rules {\n\trule a\n}", "rule a has no models"},
		{"duplicate rule names", "rules {\n\trule a {\n\t\tmodels m\n\t}\n\trule a {\n\t\tmodels n\n\t}\n}", "duplicate rule name 'a'"},
		{"reserved name", "rules {\n\trule default {\n\t\tmodels m\n\t}\n}", "reserved"},
		{"bad regex", "rules {\n\trule a {\n\t\tregex (unclosed\n\t\tmodels m\n\t}\n}", "invalid regex '(unclosed'"},
		{"bad header regex", "rules {\n\trule a {\n\t\theader_regex X (\n\t\tmodels m\n\t}\n}", "invalid regex '('"},
		{"unknown operator", "rules {\n\trule a {\n\t\tfield x $like y\n\t\tmodels m\n\t}\n}", "field x: unknown operator '$like' (want $eq, $ne"},
		{"operator without value", "rules {\n\trule a {\n\t\tfield x $eq\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"bad $in array", "rules {\n\trule a {\n\t\tfield x $in [1,\n\t\tmodels m\n\t}\n}", "field x: $in takes a list"},
		{"$eq with several values", "rules {\n\trule a {\n\t\tfield x a b\n\t\tmodels m\n\t}\n}", "wrong argument count"},
		{"$gt object", "rules {\n\trule a {\n\t\tfield x $gt {\"a\":1}\n\t\tmodels m\n\t}\n}", "$gt takes a number or a string"},
		{"operator twice", "rules {\n\trule a {\n\t\tfield x $eq 1\n\t\tfield x $eq 2\n\t\tmodels m\n\t}\n}", "operator $eq given twice"},
		{"bad scope", "rules {\n\trule a {\n\t\tscope all\n\t\tmodels m\n\t}\n}", "unknown scope 'all'"},
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
		{"empty default", "rules {\n\tdefault\n}", "default needs models or params"},
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

// A regex rule holds exactly when its regex matches the text, whatever
// the letter case and script of text and pattern.
func TestRulesRegexMatches(t *testing.T) {
	patterns := []string{`(?i)select`, `(?i)KISS`, `(?i)σοφία`, `(?i)straße`, `class|def`, `(?i)\bİ\b`,
		`(?i)ǅ`, `(?i)ﬀ`, `ab+c`, `(?i)(ab|cd)e`, `翻译|(?i)translate`, `(?i)θ`, `(?i)µ`}
	pieces := []string{"ſ", "K", "ς", "Σ", "σ", "İ", "ı", "i", "ß", "ẞ", "SELECT", "SeLeCt", "ſelect", "kiſſ",
		"KISS", "ΣΟΦΊΑ", "σοφία", "STRAßE", "straẞe", "ǅ", "ǆ", "Ǆ", "ﬀ", "ϑ", "Θ", "µ", "Μ", "μ", "abbc",
		"ABE", "cDe", "翻译", "TRANSLATE", " ", "x", "\xff"}
	rng := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		pat, _ := json.Marshal(p)
		r := rulesLoad(t, `{"rules":[{"name":"r","when":{"regex":`+string(pat)+`},"models":["pick"]}]}`)
		for range 2000 {
			var b strings.Builder
			for range 1 + rng.IntN(4) {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			text := b.String()
			want := re.MatchString(text)
			if want {
				checked++
			}
			req := &Request{LastUser: text, Conversation: text}
			if got := r.Select(req, rulesCands("pick")).Reason == "rule=r"; got != want {
				t.Errorf("rule with regex %q on %q: matched = %v, want %v", p, text, got, want)
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d matching texts checked", checked)
	}
}

// The keywords of every scope are found in one pass over the texts per
// Select; whatever the scopes asked for and in whichever order, a
// keyword test holds exactly when the lower-cased text of its scope
// contains the lower-cased keyword.
func TestRulesKeywordsMatchReference(t *testing.T) {
	keywords := []string{"ab", "B C", "abc", "c\na", "证明", "明", "É", "éa", "k", "a b", "\nb", "İ"}
	pieces := []string{"a", "b", "c", "A", "B", " ", "\n", "é", "É", "证", "明", "K", "\u212A", "i", "İ", "\xff"}
	scopes := []string{"last_user", "conversation", "system"}
	rng := rand.New(rand.NewPCG(5, 8))
	text := func() string {
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for range 300 {
		// A few rules on random scopes, each holding on one keyword
		// (any) or two (all).
		type ruleSpec struct {
			scope string
			all   bool
			kws   []string
		}
		specs := make([]ruleSpec, 1+rng.IntN(4))
		var cfg strings.Builder
		cfg.WriteString(`{"rules":[`)
		for i := range specs {
			sp := &specs[i]
			sp.scope = scopes[rng.IntN(len(scopes))]
			sp.all = rng.IntN(2) == 0
			sp.kws = []string{keywords[rng.IntN(len(keywords))], keywords[rng.IntN(len(keywords))]}
			if !sp.all {
				sp.kws = sp.kws[:1]
			}
			kws, _ := json.Marshal(sp.kws)
			field := "keywords"
			if sp.all {
				field = "keywords_all"
			}
			if i > 0 {
				cfg.WriteString(",")
			}
			fmt.Fprintf(&cfg, `{"name":"r%d","when":{"scope":%q,%q:%s},"models":["m"]}`, i, sp.scope, field, kws)
		}
		cfg.WriteString(`]}`)
		r := rulesLoad(t, cfg.String())
		for range 20 {
			req := &Request{System: text(), LastUser: text()}
			switch rng.IntN(3) {
			case 0: // as BuildRequest makes it
				req.Conversation = req.System + "\n" + text() + "\n" + req.LastUser
			case 1: // no system prompt, one message
				req.System, req.Conversation = "", req.LastUser
			default: // a conversation that does not end with the last user message
				req.Conversation = req.System + "\n" + req.LastUser + "\n" + text()
			}
			want := "rules:no_match"
			for i, sp := range specs {
				scoped := map[string]string{"last_user": req.LastUser, "conversation": req.Conversation, "system": req.System}[sp.scope]
				lower := refLower(scoped)
				holds := sp.all
				for _, kw := range sp.kws {
					if has := strings.Contains(lower, strings.ToLower(kw)); sp.all {
						holds = holds && has
					} else {
						holds = holds || has
					}
				}
				if holds {
					want = fmt.Sprintf("rule=r%d", i)
					break
				}
			}
			if d := r.Select(req, rulesCands("m")); d.Reason != want {
				t.Fatalf("rules %s on %+v: reason %q, want %q", cfg.String(), *req, d.Reason, want)
			}
		}
	}
}

// A keyword that spans the end of the earlier messages and the start of
// the last user message is in the conversation, not in the last user
// message; the two scopes share one pass.
func TestRulesKeywordsAcrossMessages(t *testing.T) {
	r := rulesLoad(t, `{"rules":[
		{"name":"user","when":{"keywords":["databases.\nhello"]},"models":["m"]},
		{"name":"user_end","when":{"keywords":["hello"]},"models":["m"]},
		{"name":"conv","when":{"keywords":["databases.\nhello"],"scope":"conversation"},"models":["m"]}],
		"default":{"models":["m"]}}`)
	req := rulesChat("Hello there", "")
	if d := r.Select(req, rulesCands("m")); d.Reason != "rule=user_end" {
		t.Errorf("reason %q, want rule=user_end", d.Reason)
	}
	req = rulesChat("bye", "")
	if d := r.Select(req, rulesCands("m")); d.Reason != "rule=default" {
		t.Errorf("reason %q, want rule=default", d.Reason)
	}
	r = rulesLoad(t, `{"rules":[
		{"name":"user","when":{"keywords":["databases.\nhello"]},"models":["m"]},
		{"name":"conv","when":{"keywords":["DATABASES.\nHELLO"],"scope":"conversation"},"models":["m"]}]}`)
	if d := r.Select(rulesChat("Hello there", ""), rulesCands("m")); d.Reason != "rule=conv" {
		t.Errorf("reason %q, want rule=conv", d.Reason)
	}
}

// Token bounds on the same text under different limits: each rule gets
// the answer a full estimate gives, whatever the rules before it asked.
func TestRulesTokenBounds(t *testing.T) {
	texts := []string{"hi", strings.Repeat("word ", 30), strings.Repeat("word ", 100), strings.Repeat("证明", 200)}
	bounds := [][2]int{{0, 5}, {50, 0}, {0, 40}, {20, 0}, {0, 200}, {10, 120}, {0, 1}, {1, 0}, {0, math.MaxInt}, {101, 0}}
	for _, text := range texts {
		n := tokens.Estimate(text)
		req := rulesChat(text, "")
		// Each rule set asks for the bounds in another order; the first
		// rule whose bounds hold wins.
		for start := range bounds {
			var rules []string
			want := "rules:no_match"
			for i := range bounds {
				b := bounds[(start+i)%len(bounds)]
				rules = append(rules, fmt.Sprintf(`{"name":"r%d","when":{"min_tokens":%d,"max_tokens":%d},"models":["m"]}`, i, b[0], b[1]))
				if want == "rules:no_match" && n >= b[0] && (b[1] == 0 || n <= b[1]) {
					want = fmt.Sprintf("rule=r%d", i)
				}
			}
			r := rulesLoad(t, `{"rules":[`+strings.Join(rules, ",")+`]}`)
			if got := r.Select(req, rulesCands("m")).Reason; got != want {
				t.Errorf("%d tokens, bounds from #%d: reason %q, want %q", n, start, got, want)
			}
		}
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
