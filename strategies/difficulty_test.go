package strategies

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/tokens"
)

// difficultyTiers are the tiers of the documented example.
var difficultyTiers = []DifficultyTier{
	{Min: 0, Models: []string{"small"}},
	{Min: 0.35, Models: []string{"medium"}},
	{Min: 0.7, Models: []string{"large", "large-backup"}},
}

func newDifficulty(t testing.TB, s *Difficulty) *Difficulty {
	t.Helper()
	if s.Tiers == nil {
		s.Tiers = difficultyTiers
	}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return s
}

// diffRequest builds the request view of a conversation: an optional
// system prompt, earlier turns, and the last user message.
func diffRequest(system string, history []string, user string) *Request {
	parts := make([]string, 0, len(history)+2)
	if system != "" {
		parts = append(parts, system)
	}
	parts = append(parts, history...)
	parts = append(parts, user)
	conv := strings.Join(parts, "\n")
	return &Request{
		System:       system,
		LastUser:     user,
		Conversation: conv,
		PromptTokens: tokens.Estimate(conv) + MessageTokenOverhead*len(parts),
		TextTokens:   tokens.Estimate(conv),
	}
}

const (
	hardEN = "Design an algorithm to find the k-th smallest element in the union of two sorted arrays. Requirements:\n" +
		"1. It must run in O(log(m+n)) time and use at most O(1) extra memory.\n" +
		"2. Prove its correctness step by step.\n" +
		"3. Analyze the worst case and explain the trade-offs against a heap-based approach.\n" +
		"4. Output the final answer as JSON with the fields `algorithm`, `complexity` and `proof`."
	hardZH = "请设计一个算法，在两个有序数组的并集中找到第k小的元素。要求：\n" +
		"1. 时间复杂度必须为O(log(m+n))，额外空间至多O(1)；\n" +
		"2. 逐步证明算法的正确性；\n" +
		"3. 分析最坏情况，并与基于堆的方法进行比较和权衡；\n" +
		"4. 以JSON格式输出，至少包含algorithm、complexity和proof三个字段。"
)

func TestDifficultyScores(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	tests := []struct {
		name     string
		req      *Request
		min, max float64
		tier     int // -1: medium or large
	}{
		// Easy: greetings, small talk, simple facts, simple tasks.
		{"en greeting", diffRequest("", nil, "Hi there!"), 0, 0.05, 0},
		{"zh greeting", diffRequest("", nil, "你好！"), 0, 0.05, 0},
		{"en thanks", diffRequest("", nil, "Thanks, that's all for today."), 0, 0.05, 0},
		{"en fact", diffRequest("", nil, "What's the capital of France?"), 0, 0.05, 0},
		{"zh weather", diffRequest("", nil, "今天天气怎么样？"), 0, 0.05, 0},
		{"zh translate", diffRequest("", nil, "请帮我翻译这句话：我喜欢吃苹果。"), 0, 0.05, 0},
		{"en haiku", diffRequest("", nil, "Write a haiku about autumn leaves."), 0, 0.05, 0},
		// One reasoning or domain cue: still easy.
		{"en why", diffRequest("", nil, "Why is the sky blue?"), 0.1, 0.25, 0},
		{"zh why", diffRequest("", nil, "天空为什么是蓝色的？"), 0.1, 0.25, 0},
		{"en proof", diffRequest("", nil, "Prove that there are infinitely many primes."), 0.15, 0.35, 0},
		// Medium: a few cues of several kinds.
		{"en medium", diffRequest("", nil, "Compare quicksort and mergesort and analyze their time complexity. Answer in a table."), 0.35, 0.7, 1},
		{"zh medium", diffRequest("", nil, "请比较快速排序和归并排序，分析它们的时间复杂度，并用表格格式输出。"), 0.35, 0.7, 1},
		// Hard: multi-step algorithm design and proof with constraints.
		{"en hard", diffRequest("", nil, hardEN), 0.6, 1, -1},
		{"zh hard", diffRequest("", nil, hardZH), 0.6, 1, -1},
		{"en hard in context", diffRequest(strings.Repeat("You are a senior engineer who reviews algorithms for a trading firm. ", 40),
			[]string{strings.Repeat("Earlier we discussed heaps, merge steps and binary search on sorted arrays. ", 40)}, hardEN), 0.7, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := s.Assess(tt.req)
			if sc.Score < tt.min || sc.Score > tt.max {
				t.Errorf("score %.3f, want %.2f..%.2f (%+v)", sc.Score, tt.min, tt.max, sc)
			}
			cands := diffCands("small", "medium", "large", "large-backup")
			d := s.Select(tt.req, cands)
			switch {
			case tt.tier < 0: // medium or large
				if cands[0].Model == "small" {
					t.Errorf("first candidate small, want medium or large (%s)", d.Reason)
				}
			case cands[0].Model != difficultyTiers[tt.tier].Models[0]:
				t.Errorf("first candidate %s, want %s (%s)", cands[0].Model, difficultyTiers[tt.tier].Models[0], d.Reason)
			}
		})
	}
}

func TestDifficultyContext(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	const user = "Can you now refactor the function so that it handles empty input?"
	alone := s.Assess(diffRequest("", nil, user))
	if alone.Context != 0 {
		t.Errorf("single message: context %.3f, want 0", alone.Context)
	}
	system := strings.Repeat("You are a meticulous assistant for a bank's platform team. Follow the style guide. ", 30)
	var history []string
	for i := range 12 {
		history = append(history, strings.Repeat("Here is more of the code we are working on, part "+string(rune('A'+i))+". ", 25))
	}
	withSystem := s.Assess(diffRequest(system, nil, user))
	withHistory := s.Assess(diffRequest("", history, user))
	full := s.Assess(diffRequest(system, history, user))
	if !(withSystem.Context > alone.Context && withHistory.Context > alone.Context && full.Context > withSystem.Context && full.Context > withHistory.Context) {
		t.Errorf("context scores: alone %.3f, system %.3f, history %.3f, both %.3f; want alone < each < both",
			alone.Context, withSystem.Context, withHistory.Context, full.Context)
	}
	if !(full.Score > alone.Score+0.1) {
		t.Errorf("long conversation with a big system prompt scores %.3f, the last message alone %.3f; want clearly higher", full.Score, alone.Score)
	}
	// The cue dimensions read the last user message only.
	if full.Reasoning != alone.Reasoning || full.Structure != alone.Structure || full.Domain != alone.Domain {
		t.Errorf("cue scores changed with the context: %+v vs %+v", full, alone)
	}
	// Without a last user message, the conversation is read.
	conv := s.Assess(&Request{Conversation: "Prove the theorem step by step."})
	if conv.Reasoning == 0 || conv.Domain == 0 {
		t.Errorf("no last user message: %+v, want the conversation's cues", conv)
	}
}

func TestDifficultyMonotonic(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	var all []string
	for _, dim := range []string{"reasoning", "structure", "domain"} {
		for _, c := range defaultCues[dim] {
			all = append(all, strings.TrimSuffix(c, "*"))
		}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for _, base := range []string{"hello", "请帮我看看这段话", "Summarize the text below."} {
		for range 50 {
			text := base
			prev := s.Assess(diffRequest("", nil, text))
			for range 12 {
				text += " " + all[rng.IntN(len(all))] + "."
				sc := s.Assess(diffRequest("", nil, text))
				if sc.Score < prev.Score || sc.Reasoning < prev.Reasoning || sc.Structure < prev.Structure || sc.Domain < prev.Domain {
					t.Fatalf("adding cues lowered the score: %+v → %+v for %q", prev, sc, text)
				}
				prev = sc
			}
		}
	}
	// More tokens, more history, a bigger system prompt: never lower.
	prev := 0.0
	for n := 1; n < 5000; n *= 3 {
		req := diffRequest(strings.Repeat("x ", n), []string{strings.Repeat("y ", n)}, "Why?")
		if sc := s.Assess(req); sc.Score < prev {
			t.Fatalf("score fell from %.3f to %.3f at size %d", prev, sc.Score, n)
		} else {
			prev = sc.Score
		}
	}
}

func TestDifficultyCueMatching(t *testing.T) {
	s := newDifficulty(t, &Difficulty{
		Cues: map[string][]string{
			"reasoning": {"prove", "optimiz*", "step by step", "доказать"},
			"structure": {"```", "must"},
			"domain":    {"o(n*", "算法", "b树"},
		},
	})
	tests := []struct {
		text                         string
		reasoning, structure, domain int
	}{
		{"prove it", 1, 0, 0},
		{"PROVE IT, Prove it, prove it", 1, 0, 0}, // distinct cues count once
		{"improve it; proven; disprove", 0, 0, 0}, // word boundaries
		{"prove.", 1, 0, 0},
		{"(prove)", 1, 0, 0},
		{"optimize, optimization, optimizer", 1, 0, 0},
		{"reoptimize", 0, 0, 0},
		{"Step-by-step", 0, 0, 0},
		{"Step by Step, please", 1, 0, 0},
		{"ДОКАЗАТЬ теорему", 1, 0, 0}, // non-ASCII case folding
		{"you MUST use ```go fences```", 0, 2, 0},
		{"mustard", 0, 0, 0},
		{"runs in O(n log n), or O(N^2)", 0, 0, 1},
		{"用B树实现这个算法", 0, 0, 2}, // Chinese and mixed cues match anywhere
		{"用prove证明", 1, 0, 0},  // English cue next to Chinese
		{"", 0, 0, 0},
	}
	for _, tt := range tests {
		got := s.matcher.count(tt.text)
		want := [numDims]int{dimReasoning: tt.reasoning, dimStructure: tt.structure, dimDomain: tt.domain}
		if got != want {
			t.Errorf("count(%q) = %v, want %v", tt.text, got, want)
		}
	}
}

// naiveCount is the reference for cueMatcher.count: every cue searched
// for at every position of the lower-cased text.
func naiveCount(lists [numDims][]string, text string) [numDims]int {
	lower := []byte(strings.Map(unicode.ToLower, text))
	var hits [numDims]int
	for dim, list := range lists {
		seen := map[string]bool{}
		for _, raw := range list {
			c, _ := parseCue(raw)
			key := c.text + strings.Repeat("$", btoi(c.end))
			if seen[key] {
				continue
			}
			for i := 0; i+len(c.text) <= len(lower); i++ {
				if string(lower[i:i+len(c.text)]) != c.text {
					continue
				}
				if c.wordStart && i > 0 && isWordByte(lower[i-1]) {
					continue
				}
				if j := i + len(c.text); c.end && j < len(lower) && isWordByte(lower[j]) {
					continue
				}
				seen[key] = true
				hits[dim]++
				break
			}
		}
	}
	return hits
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestCueMatcherMatchesReference(t *testing.T) {
	lists := [numDims][]string{
		dimReasoning: {"ab", "abc*", "bc", "b c", "证明", "证", "abab"},
		dimStructure: {"c", "ca*", "```", "--", "a-b"},
		dimDomain:    {"éa", "ÉB*", "x", "明a"},
	}
	m, err := newCueMatcher(lists)
	if err != nil {
		t.Fatal(err)
	}
	alphabet := []string{"a", "b", "c", "A", "B", " ", "-", "`", "é", "É", "证", "明", "x", "1", "\n", "."}
	rng := rand.New(rand.NewPCG(3, 5))
	for range 3000 {
		var b strings.Builder
		for range rng.IntN(24) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		text := b.String()
		if got, want := m.count(text), naiveCount(lists, text); got != want {
			t.Fatalf("count(%q) = %v, want %v", text, got, want)
		}
	}
	// The built-in cues against the reference on real prompts.
	var builtin [numDims][]string
	for i, name := range dimNames {
		builtin[i] = defaultCues[name]
	}
	dm, err := defaultMatcher()
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{hardEN, hardZH, strings.ToUpper(hardEN), "Thanks!", "∑ x ≤ ∞ in $$\\frac{a}{b}$$"} {
		if got, want := dm.count(text), naiveCount(builtin, text); got != want {
			t.Errorf("built-in count(%.30q…) = %v, want %v", text, got, want)
		}
	}
}

func TestDifficultyTiers(t *testing.T) {
	s := newDifficulty(t, &Difficulty{Tiers: []DifficultyTier{
		// Out of order on purpose: tiers are sorted by min.
		{Min: 0.7, Models: []string{"large", "large-backup"}},
		{Min: 0, Models: []string{"small"}},
		{Min: 0.35, Models: []string{"medium"}},
	}})
	tests := []struct {
		name  string
		score float64
		cands []string
		want  []string
		tier  int
	}{
		{"low", 0.1, []string{"large", "medium", "small"}, []string{"small", "large", "medium"}, 0},
		{"at threshold", 0.35, []string{"large", "medium", "small"}, []string{"medium", "large", "small"}, 1},
		{"high", 0.9, []string{"small", "large-backup", "medium", "large"}, []string{"large", "large-backup", "small", "medium"}, 2},
		{"high, only backup", 0.9, []string{"small", "large-backup", "medium"}, []string{"large-backup", "small", "medium"}, 2},
		{"high tier absent: next lower", 0.9, []string{"small", "medium", "other"}, []string{"medium", "small", "other"}, 1},
		{"two tiers absent: lowest", 0.9, []string{"other", "small"}, []string{"small", "other"}, 0},
		{"low tier absent: next higher", 0.1, []string{"large", "other", "medium"}, []string{"medium", "large", "other"}, 1},
		{"medium absent: lower first", 0.5, []string{"large", "small"}, []string{"small", "large"}, 0},
		{"none present", 0.5, []string{"x", "y"}, []string{"x", "y"}, -1},
		{"no candidates", 0.5, nil, nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := diffCands(tt.cands...)
			tier := s.preferTier(cands, tt.score)
			if got := candModels(cands); tier != tt.tier || !slices.Equal(got, tt.want) {
				t.Errorf("preferTier(%.2f) = %d, order %v; want %d, %v", tt.score, tier, got, tt.tier, tt.want)
			}
		})
	}

	// A lowest tier above 0: lower scores still get it.
	s2 := newDifficulty(t, &Difficulty{Tiers: []DifficultyTier{{Min: 0.5, Models: []string{"big"}}}})
	cands := diffCands("small", "big")
	if tier := s2.preferTier(cands, 0.1); tier != 0 || cands[0].Model != "big" {
		t.Errorf("score below every tier: tier %d, order %v", tier, candModels(cands))
	}
}

func TestDifficultyReason(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	re := regexp.MustCompile(`^difficulty=(0|1)\.\d\d tier=(\d+|none)$`)
	for _, tt := range []struct {
		req   *Request
		cands []string
		want  string
	}{
		{diffRequest("", nil, "hi"), []string{"large", "small"}, "difficulty=0.00 tier=0"},
		{diffRequest("", nil, hardZH), []string{"small", "large"}, " tier=2"},
		{diffRequest("", nil, "hi"), []string{"other"}, "difficulty=0.00 tier=none"},
	} {
		cands := diffCands(tt.cands...)
		d := s.Select(tt.req, cands)
		if !re.MatchString(d.Reason) || !strings.Contains(d.Reason, tt.want) {
			t.Errorf("reason %q, want the form difficulty=0.62 tier=2 with %q", d.Reason, tt.want)
		}
		if d.Params != nil {
			t.Errorf("params %v, want none", d.Params)
		}
	}
	// Two decimals, rounded; the tier index in ascending order.
	for _, text := range []string{hardEN, hardZH, "Why?"} {
		req := diffRequest("", nil, text)
		sc := s.Assess(req)
		cands := diffCands("small", "medium", "large")
		d := s.Select(req, cands)
		tier := slices.IndexFunc(difficultyTiers, func(t DifficultyTier) bool { return t.Models[0] == cands[0].Model })
		if want := fmt.Sprintf("difficulty=%.2f tier=%d", sc.Score, tier); d.Reason != want {
			t.Errorf("reason %q, want %q", d.Reason, want)
		}
	}
}

func TestDifficultyWeights(t *testing.T) {
	req := diffRequest("", nil, hardEN)
	onlyReasoning := newDifficulty(t, &Difficulty{Weights: map[string]float64{
		"length": 0, "structure": 0, "domain": 0, "context": 0, "reasoning": 2,
	}})
	sc := onlyReasoning.Assess(req)
	if sc.Score != sc.Reasoning {
		t.Errorf("only reasoning weighted: score %v, reasoning %v", sc.Score, sc.Reasoning)
	}
	// Weights are normalized: scaling them all changes nothing.
	a := newDifficulty(t, &Difficulty{})
	b := newDifficulty(t, &Difficulty{Weights: map[string]float64{
		"length": 2, "reasoning": 3, "structure": 2, "domain": 2, "context": 1,
	}})
	if x, y := a.Assess(req).Score, b.Assess(req).Score; x-y > 1e-12 || y-x > 1e-12 {
		t.Errorf("scaled weights: %v vs %v", x, y)
	}
	// long_tokens: a lower one makes the same prompt longer.
	short := newDifficulty(t, &Difficulty{LongTokens: 100})
	if x, y := short.Assess(req).Length, a.Assess(req).Length; !(x > y) {
		t.Errorf("long_tokens 100: length %v, default %v", x, y)
	}
	// Tools and JSON mode are structure.
	plain := diffRequest("", nil, "Tell me a joke.")
	tools := *plain
	tools.HasTools, tools.JSONMode = true, true
	if x, y := a.Assess(&tools).Structure, a.Assess(plain).Structure; !(x > y) {
		t.Errorf("tools and JSON mode: structure %v, plain %v", x, y)
	}
}

func TestDifficultyAddCues(t *testing.T) {
	base := newDifficulty(t, &Difficulty{})
	added := newDifficulty(t, &Difficulty{AddCues: map[string][]string{"reasoning": {"权衡", "tradeoff", "Kubernetes"}}})
	replaced := newDifficulty(t, &Difficulty{Cues: map[string][]string{"reasoning": {"kubernetes"}}})
	req := diffRequest("", nil, "Why would we deploy this on kubernetes?")
	if b, a := base.Assess(req).Reasoning, added.Assess(req).Reasoning; !(a > b) {
		t.Errorf("add_cues: reasoning %v, built-in %v", a, b)
	}
	// Replaced: "why" is no longer a cue, kubernetes is.
	if got, want := replaced.Assess(req).Reasoning, hitScore(1); got != want {
		t.Errorf("cues: reasoning %v, want %v", got, want)
	}
	// The unprovisioned zero value works with the defaults.
	var zero Difficulty
	if got, want := zero.Assess(req), base.Assess(req); got != want {
		t.Errorf("zero value: %+v, provisioned defaults: %+v", got, want)
	}
}

func TestDifficultyUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		input   string
		want    string // JSON of the module
		wantErr string
	}{
		{input: `difficulty {
			weights length 0.2 reasoning 0.3 structure 0.2 domain 0.2 context 0.1
			long_tokens 2000
			add_cues reasoning 权衡 tradeoff
			tier 0    small
			tier 0.35 medium
			tier 0.7  large large-backup
		}`, want: `{"weights":{"context":0.1,"domain":0.2,"length":0.2,"reasoning":0.3,"structure":0.2},"long_tokens":2000,"add_cues":{"reasoning":["权衡","tradeoff"]},"tiers":[{"min":0,"models":["small"]},{"min":0.35,"models":["medium"]},{"min":0.7,"models":["large","large-backup"]}]}`},
		{input: `difficulty {
			weights reasoning 1
			weights domain 0.5
			history_tokens 8000
			system_tokens 1000
			cues domain kubernetes "service mesh" helm*
			cues domain istio
			add_cues structure "output as" 格式
			tier 0.5 big
		}`, want: `{"weights":{"domain":0.5,"reasoning":1},"history_tokens":8000,"system_tokens":1000,"cues":{"domain":["kubernetes","service mesh","helm*","istio"]},"add_cues":{"structure":["output as","格式"]},"tiers":[{"min":0.5,"models":["big"]}]}`},
		{input: `difficulty`, want: `{}`},
		{input: `difficulty now`, wantErr: "wrong argument count"},
		{input: "difficulty {\n weights length\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n weights\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n weights size 1\n}", wantErr: "unknown dimension 'size'"},
		{input: "difficulty {\n weights length -1\n}", wantErr: "invalid weight value '-1'"},
		{input: "difficulty {\n weights length x\n}", wantErr: "invalid weight value 'x'"},
		{input: "difficulty {\n long_tokens\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n long_tokens -5\n}", wantErr: "invalid long_tokens value '-5'"},
		{input: "difficulty {\n system_tokens 1 2\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n cues reasoning\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n cues length long\n}", wantErr: "dimension length has no cues"},
		{input: "difficulty {\n add_cues style fancy\n}", wantErr: `unknown cue dimension "style"`},
		{input: "difficulty {\n add_cues domain a*b\n}", wantErr: "* is only allowed at the end"},
		{input: "difficulty {\n add_cues domain *\n}", wantErr: "invalid cue '*': empty"},
		{input: "difficulty {\n tier 0.5\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n tier high big\n}", wantErr: "invalid tier score 'high'"},
		{input: "difficulty {\n tier 1.5 big\n}", wantErr: "invalid tier score '1.5'"},
		{input: "difficulty {\n threshold 0.5\n}", wantErr: "unrecognized subdirective: threshold"},
	}
	for _, tt := range tests {
		var s Difficulty
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.input, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.input, err)
			continue
		}
		got, _ := json.Marshal(&s)
		if string(got) != tt.want {
			t.Errorf("%q:\n got %s\nwant %s", tt.input, got, tt.want)
		}
	}
}

func TestDifficultyUnmarshalModule(t *testing.T) {
	// As the route directive reads it: "strategy difficulty { ... }", the
	// dispenser on the strategy's name.
	d := caddyfile.NewTestDispenser(`strategy difficulty {
		tier 0 small
		tier 0.5 large
	}
	strategy_after x`)
	d.Next()
	d.NextArg()
	mod, err := caddyfile.UnmarshalModule(d, Namespace+".difficulty")
	if err != nil {
		t.Fatal(err)
	}
	s := mod.(*Difficulty)
	if len(s.Tiers) != 2 || s.Tiers[1].Models[0] != "large" {
		t.Errorf("tiers %+v", s.Tiers)
	}
	if !d.Next() || d.Val() != "strategy_after" {
		t.Errorf("dispenser not past the block: at %q", d.Val())
	}
}

func TestDifficultyJSONRoundTrip(t *testing.T) {
	in := &Difficulty{
		Weights:       map[string]float64{"reasoning": 0.5, "context": 0},
		LongTokens:    1500,
		HistoryTokens: 3000,
		SystemTokens:  500,
		Cues:          map[string][]string{"domain": {"kubernetes", "helm*"}},
		AddCues:       map[string][]string{"reasoning": {"权衡"}},
		Tiers:         difficultyTiers,
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Difficulty
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, &out)
	}
	b2, _ := json.Marshal(&out)
	if string(b) != string(b2) {
		t.Errorf("JSON changed:\n%s\n%s", b, b2)
	}
	newDifficulty(t, in)
	newDifficulty(t, &out)
	req := diffRequest("sys", []string{"before"}, "Why deploy with helm on kubernetes? 权衡一下。")
	if a, b := in.Assess(req), out.Assess(req); a != b {
		t.Errorf("assessments differ: %+v vs %+v", a, b)
	}

	// Loaded as a Caddy module.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	mod, err := ctx.LoadModuleByID(Namespace+".difficulty", b)
	if err != nil {
		t.Fatalf("LoadModuleByID: %v", err)
	}
	if _, ok := mod.(Strategy); !ok {
		t.Fatalf("module %T is not a Strategy", mod)
	}
}

func TestDifficultyValidate(t *testing.T) {
	tests := []struct {
		s       Difficulty
		wantErr string
	}{
		{Difficulty{Tiers: difficultyTiers}, ""},
		{Difficulty{}, "at least one tier"},
		{Difficulty{Tiers: []DifficultyTier{{Min: -0.1, Models: []string{"a"}}}}, "min must be from 0 to 1"},
		{Difficulty{Tiers: []DifficultyTier{{Min: 1.1, Models: []string{"a"}}}}, "min must be from 0 to 1"},
		{Difficulty{Tiers: []DifficultyTier{{Min: 0.2, Models: []string{"a"}}, {Min: 0.2, Models: []string{"b"}}}}, "another tier has min 0.2"},
		{Difficulty{Tiers: []DifficultyTier{{Min: 0.2}}}, "no models"},
		{Difficulty{Tiers: []DifficultyTier{{Min: 0.2, Models: []string{""}}}}, "empty model name"},
		{Difficulty{Tiers: difficultyTiers, LongTokens: -1}, "long_tokens must not be negative"},
		{Difficulty{Tiers: difficultyTiers, Cues: map[string][]string{"context": {"x"}}}, "has no cues"},
		{Difficulty{Tiers: difficultyTiers, AddCues: map[string][]string{"domain": {strings.Repeat("x", 64)}}}, "longer than 63 bytes"},
		{Difficulty{Tiers: difficultyTiers, AddCues: map[string][]string{"domain": {" "}}}, "empty"},
	}
	for i, tt := range tests {
		err := tt.s.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%d: Validate() = %v, want %q", i, err, tt.wantErr)
		}
	}
	// Provision rejects what it cannot use.
	for _, tt := range []struct {
		s       Difficulty
		wantErr string
	}{
		{Difficulty{Weights: map[string]float64{"size": 1}}, `unknown dimension "size"`},
		{Difficulty{Weights: map[string]float64{"length": -1}}, "finite and non-negative"},
		{Difficulty{Weights: map[string]float64{"length": 0, "reasoning": 0, "structure": 0, "domain": 0, "context": 0}}, "at least one weight"},
		{Difficulty{AddCues: map[string][]string{"domain": {"a*b"}}}, "only allowed at the end"},
	} {
		if err := tt.s.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Provision(%+v) = %v, want %q", tt.s, err, tt.wantErr)
		}
	}
	// Too many cues.
	many := make([]string, maxCues+1)
	for i := range many {
		many[i] = "cue" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
	}
	if err := (&Difficulty{Cues: map[string][]string{"domain": many}}).Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "at most 1024") {
		t.Errorf("%d cues: %v", len(many), err)
	}
}

func TestDifficultyConcurrent(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	want := s.Assess(diffRequest("", nil, hardEN))
	done := make(chan bool)
	for range 4 {
		go func() {
			defer func() { done <- true }()
			for range 200 {
				if got := s.Assess(diffRequest("", nil, hardEN)); got != want {
					t.Errorf("concurrent Assess: %+v, want %+v", got, want)
					return
				}
				s.Select(diffRequest("", nil, "hi"), diffCands("small", "large"))
			}
		}()
	}
	for range 4 {
		<-done
	}
}

func diffCands(models ...string) []Candidate {
	cands := make([]Candidate, len(models))
	for i, m := range models {
		cands[i] = Candidate{Model: m}
	}
	return cands
}

func candModels(cands []Candidate) []string {
	if cands == nil {
		return nil
	}
	out := make([]string, len(cands))
	for i, c := range cands {
		out[i] = c.Model
	}
	return out
}

// diffBenchText repeats sample text, English or Chinese, to n bytes.
func diffBenchText(n int, chinese bool) string {
	src := hardEN + "\n\nHere is some more context about the data we work with and why it matters to us.\n"
	if chinese {
		src = hardZH + "\n\n这里是关于我们所处理的数据以及它为什么重要的更多背景信息。\n"
	}
	s := strings.Repeat(src, n/len(src)+1)[:n]
	for len(s) > 0 && !strings.HasSuffix(s, "\n") && s[len(s)-1] >= 0x80 && s[len(s)-1] < 0xC0 {
		s = s[:len(s)-1] // do not end inside a rune
	}
	return strings.ToValidUTF8(s, "")
}

func BenchmarkDifficulty(b *testing.B) {
	s := newDifficulty(b, &Difficulty{})
	for _, lang := range []struct {
		name    string
		chinese bool
	}{{"english", false}, {"chinese", true}} {
		for _, size := range []struct {
			name string
			n    int
		}{{"200B", 200}, {"4KB", 4 << 10}, {"64KB", 64 << 10}} {
			text := diffBenchText(size.n, lang.chinese)
			req := diffRequest("You are a helpful assistant.", []string{"Earlier question.", "Earlier answer."}, text)
			b.Run(lang.name+"/"+size.name, func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				cands := diffCands("large", "medium", "small")
				for b.Loop() {
					s.Select(req, cands)
				}
			})
		}
	}
}

// TestDifficultyContextIgnoresTools: tool definitions count in the prompt
// estimate, not in how long the system prompt and history are.
func TestDifficultyContextIgnoresTools(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	tools := `[{"type":"function","function":{"name":"f","parameters":{"type":"object","description":"` + strings.Repeat("a long tool description ", 1700) + `"}}}]`
	body := func(tools string) []byte {
		b := `{"model":"m","messages":[{"role":"system","content":"` + strings.Repeat("Be careful. ", 35) + `"},{"role":"user","content":"hi"}]`
		if tools != "" {
			b += `,"tools":` + tools
		}
		return []byte(b + "}")
	}
	plain, withTools := BuildRequest("/chat/completions", body("")), BuildRequest("/chat/completions", body(tools))
	if withTools.PromptTokens < plain.PromptTokens+5000 {
		t.Fatalf("tools did not count in the prompt: %d vs %d", withTools.PromptTokens, plain.PromptTokens)
	}
	if a, b := s.Assess(&plain).Context, s.Assess(&withTools).Context; a != b {
		t.Errorf("context %.3f without tools, %.3f with: want equal", a, b)
	}
}
