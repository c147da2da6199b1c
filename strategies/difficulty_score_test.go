package strategies

import (
	"math/rand/v2"
	"strings"
	"testing"
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
