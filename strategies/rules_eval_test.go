package strategies

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-llm-route/llmroute/tokens"
)

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
