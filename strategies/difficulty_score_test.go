package strategies

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// The score orders prompts as a reader would: small talk and simple
// facts, then one cue, then several cues of several kinds, then
// multi-step specialist tasks with requirements, each group above the
// one before; the tiers of the documented example follow. A Chinese
// prompt scores like its English equivalent (within 0.1, in the same
// tier). No score is pinned: the defaults are tuned on data.
func TestDifficultyScores(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	type prompt struct{ en, zh string }
	groups := []struct {
		name    string
		prompts []prompt
		tier    int
	}{
		{"easy", []prompt{
			{"Hi there!", "你好！"},
			{"Thanks, that's all for today.", "谢谢，今天就到这里。"},
			{"What's the weather like today?", "今天天气怎么样？"},
			{"Please translate this sentence: I like apples.", "请帮我翻译这句话：我喜欢吃苹果。"},
			{"Write a haiku about autumn leaves.", "写一首关于秋叶的俳句。"},
		}, 0},
		{"one cue", []prompt{
			{"Why is the sky blue?", "天空为什么是蓝色的？"},
			{"Prove that there are infinitely many primes.", "证明素数有无穷多个。"},
		}, 0},
		{"medium", []prompt{
			{"Compare quicksort and mergesort and analyze their time complexity. Answer in a table.", "请比较快速排序和归并排序，分析它们的时间复杂度，并用表格格式输出。"},
		}, 1},
		{"hard", []prompt{{hardEN, hardZH}}, 2},
	}
	prevMax := -1.0
	for _, g := range groups {
		lo, hi := 2.0, -1.0
		for _, p := range g.prompts {
			en, zh := diffRequest("", nil, p.en), diffRequest("", nil, p.zh)
			a, b := s.Assess(en), s.Assess(zh)
			if math.Abs(a.Score-b.Score) > 0.1 {
				t.Errorf("%s: %q scores %.3f, its Chinese equivalent %q %.3f; want within 0.1", g.name, p.en, a.Score, p.zh, b.Score)
			}
			for _, req := range []*Request{en, zh} {
				sc := s.Assess(req)
				lo, hi = min(lo, sc.Score), max(hi, sc.Score)
				cands := diffCands("small", "medium", "large", "large-backup")
				d := s.Select(req, cands)
				if want := difficultyTiers[g.tier].Models[0]; cands[0].Model != want {
					t.Errorf("%s: %q goes to %s, want %s (%s, %+v)", g.name, req.LastUser, cands[0].Model, want, d.Reason, sc)
				}
			}
		}
		if !(lo > prevMax) {
			t.Errorf("%s prompts score from %.3f, not above the previous group's highest %.3f", g.name, lo, prevMax)
		}
		prevMax = hi
	}
	// The same hard task deep in a long conversation with a big system
	// prompt scores higher still.
	inContext := s.Assess(diffRequest(strings.Repeat("You are a senior engineer who reviews algorithms for a trading firm. ", 40),
		[]string{strings.Repeat("Earlier we discussed heaps, merge steps and binary search on sorted arrays. ", 40)}, hardEN))
	if alone := s.Assess(diffRequest("", nil, hardEN)); !(inContext.Score > alone.Score) {
		t.Errorf("hard task in a long conversation %.3f, alone %.3f: want higher", inContext.Score, alone.Score)
	}
}

// The score is continuous in the prompt's length: a prompt that grows a
// word at a time gets a higher score each time, never by a jump, so a
// threshold on it can split prompts at any share.
func TestDifficultyContinuous(t *testing.T) {
	s := newDifficulty(t, &Difficulty{})
	for _, word := range []string{"word ", "词语"} {
		prev := s.Assess(diffRequest("", nil, word)).Score
		distinct := map[float64]bool{}
		text := word
		for range 3000 {
			text += word
			sc := s.Assess(diffRequest("", nil, text)).Score
			if sc < prev || sc-prev > 0.01 {
				t.Fatalf("%d bytes: score %.4f after %.4f; want a small rise", len(text), sc, prev)
			}
			distinct[sc] = true
			prev = sc
		}
		if len(distinct) < 1000 {
			t.Errorf("%q prompts of 1 to 3000 words: %d distinct scores, want at least 1000", word, len(distinct))
		}
	}
	// Numbers count as part of a domain cue each, not all at once.
	a := s.Assess(diffRequest("", nil, "Add 3 and 4.")).Domain
	b := s.Assess(diffRequest("", nil, "Add 3, 4, 12.5 and 1,000.")).Domain
	if !(a > 0 && b > a && b < hitScore(2)) {
		t.Errorf("domain with 2 numbers %.3f, with 4 %.3f: want 0 < first < second < two cues' %.3f", a, b, hitScore(2))
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
	scaled := map[string]float64{}
	for i, name := range dimNames {
		scaled[name] = 3 * defaultDimWeights[i]
	}
	b := newDifficulty(t, &Difficulty{Weights: scaled})
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
