package strategies

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
)

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
}
