package strategies

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/tokens"
)

// difficultyTiers are the tiers of the documented example.
var difficultyTiers = []DifficultyTier{
	{Min: 0, Models: []string{"small"}},
	{Min: 0.2, Models: []string{"medium"}},
	{Min: 0.45, Models: []string{"large", "large-backup"}},
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
	// Too many cues, each valid.
	many := make([]string, maxCues+1)
	for i := range many {
		many[i] = "cue" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
	}
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
		{Difficulty{Tiers: difficultyTiers, AddCues: map[string][]string{"domain": {"a*b"}}}, "only allowed at the end"},
		{Difficulty{Tiers: difficultyTiers, Cues: map[string][]string{"domain": many}}, "at most 1024"},
		{Difficulty{Tiers: difficultyTiers, Weights: map[string]float64{"size": 1}}, `unknown dimension "size"`},
		{Difficulty{Tiers: difficultyTiers, Weights: map[string]float64{"length": -1}}, "length must be a finite number of at least 0"},
		{Difficulty{Tiers: difficultyTiers, Weights: map[string]float64{"length": math.NaN()}}, "length must be a finite number of at least 0"},
		{Difficulty{Tiers: difficultyTiers, Weights: map[string]float64{"length": 0, "reasoning": 0, "structure": 0, "domain": 0, "context": 0}}, "at least one weight"},
	}
	for i, tt := range tests {
		err := tt.s.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%d: Validate() = %v, want %q", i, err, tt.wantErr)
		}
		// Provision validates before it sets anything up.
		if err := tt.s.Provision(caddy.Context{}); tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%d: Provision() = %v, want %q", i, err, tt.wantErr)
		}
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
