package strategies

import (
	"math"
	"strings"
)

// DifficultyScores is the assessment of one request: the dimension
// scores and their weighted mean, each in 0..1.
type DifficultyScores struct {
	Length, Reasoning, Structure, Domain, Context float64
	// Score is the weighted mean of the dimension scores.
	Score float64
}

// Assess returns the difficulty scores of req. The cue dimensions read
// the last user message (the whole conversation when there is none); the
// context dimension reads the sizes of the system prompt and of the
// earlier turns. s must be provisioned, as Caddy does when it loads the
// module.
func (s *Difficulty) Assess(req *Request) DifficultyScores {
	if req == nil {
		return DifficultyScores{}
	}
	var sc DifficultyScores

	// Length.
	sc.Length = saturate(float64(req.PromptTokens), float64(s.LongTokens))

	// Cues.
	text := req.LastUser
	if text == "" {
		text = req.Conversation
	}
	hits := s.matcher.count(text)
	hits[dimStructure] += listItems(text)
	if req.HasTools {
		hits[dimStructure]++
	}
	if req.JSONMode {
		hits[dimStructure]++
	}
	sc.Reasoning = hitScore(float64(hits[dimReasoning]))
	sc.Structure = hitScore(float64(hits[dimStructure]))
	// Numbers make a task quantitative: every numbersPerCue of them
	// count as one domain cue.
	sc.Domain = hitScore(float64(hits[dimDomain]) + float64(countNumbers(text))/numbersPerCue)

	// Context: the system prompt and the turns before the last user
	// message, in tokens, estimated from their share of the conversation.
	conv, sys := len(req.Conversation), len(req.System)
	hist := conv - sys - len(req.LastUser)
	if sys > 0 {
		hist-- // the newline after the system prompt
	}
	if req.LastUser != "" {
		hist-- // the newline before the last user message
	}
	hist = max(hist, 0)
	perByte := 0.25
	if conv > 0 && req.TextTokens > 0 {
		perByte = float64(req.TextTokens) / float64(conv)
	}
	load := float64(hist)*perByte/float64(s.HistoryTokens) + float64(sys)*perByte/float64(s.SystemTokens)
	sc.Context = saturate(load, 1)

	w := &s.weights
	sc.Score = w[dimLength]*sc.Length + w[dimReasoning]*sc.Reasoning + w[dimStructure]*sc.Structure +
		w[dimDomain]*sc.Domain + w[dimContext]*sc.Context
	sc.Score = min(max(sc.Score, 0), 1)
	return sc
}

// saturate maps x >= 0 to 0..1, reaching 0.95 at full, on the smooth
// S-curve r²/(1+r²) with r = x/half (half = full/√19, where it is 0.5).
// It rises slowly at first, so that short prompts stay near 0 and their
// cues decide, and never quite reaches 1, so that prompts longer than
// full still score higher than shorter ones: the score keeps ordering
// them, and the knob sweeps smoothly over them.
func saturate(x, full float64) float64 {
	if x <= 0 || full <= 0 {
		return 0
	}
	r := x / full * math.Sqrt(19)
	r *= r
	return r / (1 + r)
}

// hitScore maps a number of distinct cue hits (a fraction counts part
// of a cue) to 0..1.
func hitScore(n float64) float64 {
	if n <= 0 {
		return 0
	}
	return 1 - math.Exp(-n/1.5)
}

// numbersPerCue is how many numbers in the task count as one domain cue.
const numbersPerCue = 3

// countNumbers counts the numbers in text: runs of ASCII digits, with
// one '.' or ',' between digits ("3.14", "1,000") inside a number.
func countNumbers(text string) int {
	n := 0
	for i := 0; i < len(text); i++ {
		if !isDigit(text[i]) {
			continue
		}
		n++
		for i < len(text) && (isDigit(text[i]) || (text[i] == '.' || text[i] == ',') && i+1 < len(text) && isDigit(text[i+1])) {
			i++
		}
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// listItems counts the structure hits of list items in text: one for two
// or more numbered items ("1.", "2)", "3、"), one more for four or more,
// and one for three or more bullets ("- ", "* ", "• ").
func listItems(text string) int {
	numbered, bullets := 0, 0
	for i := 0; i < len(text); {
		// At the start of a line: skip indentation.
		for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
			i++
		}
		j := i
		for j < len(text) && j-i < 3 && text[j] >= '0' && text[j] <= '9' {
			j++
		}
		switch rest := text[j:]; {
		case j > i && (strings.HasPrefix(rest, ". ") || strings.HasPrefix(rest, ") ") || strings.HasPrefix(rest, "、")):
			numbered++
		case j == i && (strings.HasPrefix(rest, "- ") || strings.HasPrefix(rest, "* ") || strings.HasPrefix(rest, "• ")):
			bullets++
		}
		k := strings.IndexByte(text[i:], '\n')
		if k < 0 {
			break
		}
		i += k + 1
	}
	n := 0
	if numbered >= 2 {
		n++
	}
	if numbered >= 4 {
		n++
	}
	if bullets >= 3 {
		n++
	}
	return n
}
