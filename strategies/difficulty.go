package strategies

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Difficulty{})
}

// Difficulty is a strategy that scores how hard a request is, from 0
// (trivial) to 1 (hard), and puts the models of the matching tier first:
// small models for easy prompts, large ones for hard prompts.
//
// The score is the weighted mean of five dimension scores, each in 0..1:
//
//   - length: the prompt's tokens, on a saturating curve that reaches
//     0.95 at long_tokens;
//   - reasoning: reasoning cues in the last user message (prove, derive,
//     step by step, why, analyze, 证明, 推导, 为什么, …);
//   - structure: structure cues (must, at least, JSON, code fences,
//     tables, 要求, 格式, 必须, …), numbered or bulleted requirements,
//     tools and JSON mode;
//   - domain: specialist cues (math symbols and LaTeX, legal, medical,
//     finance, algorithms, 数学, 法律, 医学, 金融, 算法, …);
//   - context: the size of the earlier turns and of the system prompt,
//     in tokens (estimated from their share of the conversation).
//
// The cue dimensions read the last user message (the whole conversation
// when there is none): the task is stated there, and a long system
// prompt or history counts through context instead. A cue dimension counts the distinct cues found (each cue once, however
// often it occurs) and maps n of them to 1-exp(-n/1.5): 0.49 for one,
// 0.74 for two, 0.86 for three. Cues are matched case-insensitively; one
// that starts (ends) with an ASCII letter or digit must start (end) at a
// word boundary, and one written with a trailing * matches any ending
// ("optimiz*" matches optimize and optimization). Chinese cues match
// anywhere.
//
// The tiers map the score to models: the tier with the highest minimum
// score at or below the score wins, and its models go first, in the
// tier's order (the other candidates follow as fallbacks). When none of
// that tier's models is a candidate, the next lower tier is tried, then
// the next higher ones. The decision reads "difficulty=0.62 tier=2" (the
// index of the tier in ascending order of minimum score), or
// "difficulty=0.62 tier=none" when no tier has a candidate.
type Difficulty struct {
	// Weights of the dimensions, by name: length, reasoning, structure,
	// domain, context. Unset dimensions keep their defaults: length 0.2,
	// reasoning 0.3, structure 0.2, domain 0.2, context 0.1. The score
	// is the weighted mean, so it stays in 0..1 whatever the sum; a
	// weight of 0 turns a dimension off.
	Weights map[string]float64 `json:"weights,omitempty"`

	// Prompt tokens at which the length score reaches 0.95. Default:
	// 2000.
	LongTokens int `json:"long_tokens,omitempty"`

	// Tokens of earlier turns (the conversation before the last user
	// message, without the system prompt) at which the context score
	// reaches 0.95 when there is no system prompt. Default: 4000.
	HistoryTokens int `json:"history_tokens,omitempty"`

	// Tokens of system prompt at which the context score reaches 0.95
	// when there are no earlier turns. Default: 2000.
	SystemTokens int `json:"system_tokens,omitempty"`

	// Cues that replace the built-in ones of a cue dimension (reasoning,
	// structure or domain), e.g. {"domain": ["kubernetes", "helm"]}.
	Cues map[string][]string `json:"cues,omitempty"`

	// Cues added to those of a cue dimension (the built-in ones, or the
	// ones given in cues).
	AddCues map[string][]string `json:"add_cues,omitempty"`

	// The tiers, each a minimum score and the models to prefer from that
	// score on. At least one is required.
	Tiers []DifficultyTier `json:"tiers,omitempty"`

	weights [numDims]float64 // normalized to sum 1
	tiers   []DifficultyTier // by ascending Min
	matcher *cueMatcher
}

// DifficultyTier is one tier of the difficulty strategy.
type DifficultyTier struct {
	// The lowest score (0..1) that selects this tier.
	Min float64 `json:"min"`
	// The models to prefer, in order.
	Models []string `json:"models"`
}

// DifficultyScores is the assessment of one request: the dimension
// scores and their weighted mean, each in 0..1.
type DifficultyScores struct {
	Length, Reasoning, Structure, Domain, Context float64
	// Score is the weighted mean of the dimension scores.
	Score float64
}

// The dimensions, in the order of dimNames.
const (
	dimLength = iota
	dimReasoning
	dimStructure
	dimDomain
	dimContext
	numDims
)

var dimNames = [numDims]string{"length", "reasoning", "structure", "domain", "context"}

var defaultDimWeights = [numDims]float64{0.2, 0.3, 0.2, 0.2, 0.1}

// Defaults of the difficulty strategy.
const (
	DefaultLongTokens    = 2000
	DefaultHistoryTokens = 4000
	DefaultSystemTokens  = 2000
)

// Limits on cues: a cue is at most maxCueBytes long once lower-cased, and
// a strategy has at most maxCues of them.
const (
	maxCueBytes = 63
	maxCues     = 1024
)

var defaultCues = map[string][]string{
	"reasoning": {
		// English
		"prove", "proves", "proving", "proof", "proofs", "derive", "derives", "deriving", "derivation*",
		"step by step", "step-by-step", "why", "explain why", "analy*", "optimiz*", "optimis*", "optimal*",
		"trade-off*", "tradeoff*", "trade off", "compare", "comparing", "comparison*", "evaluat*",
		"justif*", "reasoning", "reason about", "infer", "inference", "deduc*",
		"what if", "pros and cons", "implication*", "critique", "critically", "think through",
		"think carefully", "root cause", "calculat*", "solve", "solving", "edge case*", "design*",
		"debug*", "walk through", "in depth", "in-depth", "rigorous*", "counterexample*",
		"hypothes*", "first principles", "strateg*", "how would you", "what would happen",
		// Chinese
		"证明", "推导", "为什么", "为何", "分析", "逐步", "一步一步", "优化", "权衡", "比较", "评估",
		"推理", "论证", "原因", "解释", "设计", "利弊", "优缺点", "思考", "计算", "求解", "最优",
		"策略", "调试", "排查", "详细说明", "如何实现", "深入",
	},
	"structure": {
		// English
		"must", "must not", "at least", "at most", "exactly", "no more than", "no less than",
		"no longer than", "require*", "constraint*", "format*", "json", "yaml", "xml", "csv",
		"markdown", "table", "tables", "tabular", "schema*", "bullet*", "numbered", "```", "|--", "| --",
		"only output", "only return", "output only", "do not", "don't", "should not", "shouldn't",
		"template*", "word limit", "strictly", "section*", "heading*", "step 1",
		// Chinese
		"要求", "格式", "必须", "至少", "至多", "不超过", "不少于", "不要", "不能", "不得", "表格",
		"列表", "约束", "限制", "以内", "严格", "模板", "分点", "步骤", "按照", "包括", "包含",
		"输出", "每个", "分别",
	},
	"domain": {
		// Mathematics
		"theorem*", "lemma*", "corollar*", "integral*", "derivative*", "eigen*", "matrix", "matrices",
		"polynomial*", "differential equation*", "equation*", "probabilit*", "calculus", "algebra*",
		"geometr*", "topolog*", "combinator*", "manifold*", "vector space*", "modulo", "stochastic",
		"bayes*", "primes", "prime number*", "induction", `\frac`, `\sum`, `\int`, `\sqrt`, `\lim`, `\mathbb`,
		`\begin{`, "$$", `\(`, `\[`, "∑", "∫", "√", "∀", "∃", "∈", "≤", "≥", "≠", "∞", "∂", "π",
		// Law
		"legal", "law", "laws", "lawyer*", "statute*", "statutory", "contract*", "liabilit*",
		"plaintiff*", "defendant*", "jurisdiction*", "clause*", "tort", "torts", "litigation",
		"intellectual property", "gdpr", "compliance", "regulator*", "regulation*", "court",
		"courts", "case law", "lawsuit*",
		// Medicine
		"medical", "clinical", "diagnos*", "symptom*", "patient*", "dosage*", "treatment*",
		"disease*", "syndrome*", "pharmac*", "patholog*", "side effect*", "prognos*", "surgery",
		"surgical", "oncolog*", "cardiac", "cardiolog*", "therap*",
		// Finance
		"financ*", "portfolio*", "valuation*", "hedg*", "interest rate*", "npv", "irr", "dcf",
		"ebitda", "cash flow*", "equity", "balance sheet*", "accounting", "amortiz*",
		"volatility", "arbitrage", "black-scholes", "capm", "tax", "taxes", "taxation",
		// Algorithms and computing
		"algorithm*", "complexity", "big-o", "big o", "o(n*", "o(log*", "o(1)", "dynamic programming",
		"recursion", "recursive*", "shortest path*", "np-hard", "np-complete", "heuristic*",
		"data structure*", "binary search", "concurren*", "distributed system*", "consensus",
		"race condition*", "deadlock*", "cryptograph*", "compiler*", "machine learning",
		"neural network*", "gradient*",
		// Sciences
		"quantum", "thermodynamic*", "relativity", "entropy", "wave function*", "molecul*",
		"reaction mechanism*", "stoichiometr*", "enzyme*",
		// Chinese
		"数学", "定理", "引理", "积分", "微分", "导数", "矩阵", "特征值", "概率", "方程", "几何", "代数",
		"拓扑", "统计", "数列", "法律", "法规", "合同", "条款", "诉讼", "侵权", "判决", "律师", "医学",
		"临床", "诊断", "症状", "患者", "病人", "药物", "剂量", "治疗", "病理", "金融", "投资", "财务",
		"估值", "期权", "利率", "股票", "基金", "会计", "税务", "现金流", "算法", "复杂度", "动态规划",
		"递归", "图论", "最短路径", "数据结构", "二分", "并发", "分布式", "一致性", "死锁", "加密",
		"编译", "机器学习", "神经网络", "梯度", "量子", "热力学", "化学", "物理",
	},
}

// CaddyModule returns the Caddy module information.
func (Difficulty) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".difficulty",
		New: func() caddy.Module { return new(Difficulty) },
	}
}

// Provision sets up s: the weights, the sorted tiers and the cue matcher.
func (s *Difficulty) Provision(_ caddy.Context) error {
	if s.LongTokens == 0 {
		s.LongTokens = DefaultLongTokens
	}
	if s.HistoryTokens == 0 {
		s.HistoryTokens = DefaultHistoryTokens
	}
	if s.SystemTokens == 0 {
		s.SystemTokens = DefaultSystemTokens
	}
	w := defaultDimWeights
	for name, v := range s.Weights {
		i := slices.Index(dimNames[:], name)
		if i < 0 {
			return fmt.Errorf("difficulty: unknown dimension %q in weights (want one of %s)", name, strings.Join(dimNames[:], ", "))
		}
		w[i] = v
	}
	sum := 0.0
	for _, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("difficulty: weights must be finite and non-negative, got %v", w)
		}
		sum += v
	}
	if sum <= 0 {
		return errors.New("difficulty: at least one weight must be positive")
	}
	for i := range w {
		w[i] /= sum
	}
	s.weights = w

	s.tiers = slices.Clone(s.Tiers)
	slices.SortStableFunc(s.tiers, func(a, b DifficultyTier) int { return cmp.Compare(a.Min, b.Min) })

	for _, cues := range []map[string][]string{s.Cues, s.AddCues} {
		for name := range cues {
			if err := checkCueDimension(name); err != nil {
				return fmt.Errorf("difficulty: %v", err)
			}
		}
	}
	if len(s.Cues) == 0 && len(s.AddCues) == 0 {
		m, err := defaultMatcher()
		if err != nil {
			return fmt.Errorf("difficulty: built-in cues: %v", err)
		}
		s.matcher = m
		return nil
	}
	m, err := newCueMatcher(s.cueLists())
	if err != nil {
		return fmt.Errorf("difficulty: %v", err)
	}
	s.matcher = m
	return nil
}

// cueLists returns the configured cues of each cue dimension.
func (s *Difficulty) cueLists() [numDims][]string {
	var lists [numDims][]string
	for i, name := range dimNames {
		if v, ok := s.Cues[name]; ok {
			lists[i] = slices.Clone(v)
		} else {
			lists[i] = slices.Clone(defaultCues[name])
		}
		lists[i] = append(lists[i], s.AddCues[name]...)
	}
	return lists
}

var defaultMatcher = sync.OnceValues(func() (*cueMatcher, error) {
	var lists [numDims][]string
	for i, name := range dimNames {
		lists[i] = defaultCues[name]
	}
	return newCueMatcher(lists)
})

// Validate ensures that s's configuration is valid.
func (s *Difficulty) Validate() error {
	if len(s.Tiers) == 0 {
		return errors.New("difficulty: at least one tier is required")
	}
	seen := make(map[float64]bool, len(s.Tiers))
	for i, t := range s.Tiers {
		if math.IsNaN(t.Min) || t.Min < 0 || t.Min > 1 {
			return fmt.Errorf("difficulty: tier %d: min must be from 0 to 1, got %g", i, t.Min)
		}
		if seen[t.Min] {
			return fmt.Errorf("difficulty: tier %d: another tier has min %g", i, t.Min)
		}
		seen[t.Min] = true
		if len(t.Models) == 0 {
			return fmt.Errorf("difficulty: tier %d: no models", i)
		}
		for _, m := range t.Models {
			if m == "" {
				return fmt.Errorf("difficulty: tier %d: empty model name", i)
			}
		}
	}
	for _, kv := range []struct {
		name string
		v    int
	}{{"long_tokens", s.LongTokens}, {"history_tokens", s.HistoryTokens}, {"system_tokens", s.SystemTokens}} {
		if kv.v < 0 {
			return fmt.Errorf("difficulty: %s must not be negative, got %d", kv.name, kv.v)
		}
	}
	for _, cues := range []map[string][]string{s.Cues, s.AddCues} {
		for name, list := range cues {
			if err := checkCueDimension(name); err != nil {
				return fmt.Errorf("difficulty: %v", err)
			}
			for _, c := range list {
				if _, err := parseCue(c); err != nil {
					return fmt.Errorf("difficulty: %s cue %q: %v", name, c, err)
				}
			}
		}
	}
	if s.matcher == nil {
		// Not provisioned: check what Provision would build.
		if _, err := newCueMatcher(s.cueLists()); err != nil {
			return fmt.Errorf("difficulty: %v", err)
		}
	}
	return nil
}

// checkCueDimension checks that name is a dimension with cues.
func checkCueDimension(name string) error {
	switch name {
	case "reasoning", "structure", "domain":
		return nil
	case "length", "context":
		return fmt.Errorf("dimension %s has no cues (cue dimensions: reasoning, structure, domain)", name)
	}
	return fmt.Errorf("unknown cue dimension %q (want reasoning, structure or domain)", name)
}

// Select scores req and puts the models of the matching tier first.
func (s *Difficulty) Select(req *Request, cands []Candidate) Decision {
	sc := s.Assess(req)
	tier := s.preferTier(cands, sc.Score)
	b := make([]byte, 0, 32)
	b = append(b, "difficulty="...)
	b = strconv.AppendFloat(b, sc.Score, 'f', 2, 64)
	b = append(b, " tier="...)
	if tier < 0 {
		b = append(b, "none"...)
	} else {
		b = strconv.AppendInt(b, int64(tier), 10)
	}
	return Decision{Reason: string(b)}
}

// preferTier moves the models of the tier for score to the front of
// cands and returns the tier's index, or -1 if no tier has a candidate.
func (s *Difficulty) preferTier(cands []Candidate, score float64) int {
	tiers := s.tiers
	if tiers == nil {
		tiers = s.Tiers // not provisioned; assume sorted
	}
	// The highest tier whose minimum the score reaches.
	at := -1
	for i, t := range tiers {
		if t.Min <= score {
			at = i
		}
	}
	for i := at; i >= 0; i-- {
		if Prefer(cands, tiers[i].Models) > 0 {
			return i
		}
	}
	for i := at + 1; i < len(tiers); i++ {
		if Prefer(cands, tiers[i].Models) > 0 {
			return i
		}
	}
	return -1
}

// Assess returns the difficulty scores of req. The cue dimensions read
// the last user message (the whole conversation when there is none); the
// context dimension reads the sizes of the system prompt and of the
// earlier turns.
func (s *Difficulty) Assess(req *Request) DifficultyScores {
	if req == nil {
		return DifficultyScores{}
	}
	w := s.weights
	if s.matcher == nil { // not provisioned: defaults
		var zero Difficulty
		if err := zero.Provision(caddy.Context{}); err != nil {
			return DifficultyScores{}
		}
		zero.LongTokens = orDefault(s.LongTokens, DefaultLongTokens)
		zero.HistoryTokens = orDefault(s.HistoryTokens, DefaultHistoryTokens)
		zero.SystemTokens = orDefault(s.SystemTokens, DefaultSystemTokens)
		s = &zero
		w = zero.weights
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
	sc.Reasoning = hitScore(hits[dimReasoning])
	sc.Structure = hitScore(hits[dimStructure])
	sc.Domain = hitScore(hits[dimDomain])

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

	sc.Score = w[dimLength]*sc.Length + w[dimReasoning]*sc.Reasoning + w[dimStructure]*sc.Structure +
		w[dimDomain]*sc.Domain + w[dimContext]*sc.Context
	sc.Score = min(max(sc.Score, 0), 1)
	return sc
}

// saturate maps x >= 0 to 0..1, reaching 0.95 at full.
func saturate(x, full float64) float64 {
	if x <= 0 || full <= 0 {
		return 0
	}
	return 1 - math.Exp(-3*x/full)
}

// hitScore maps a number of distinct cue hits to 0..1.
func hitScore(n int) float64 {
	if n <= 0 {
		return 0
	}
	return 1 - math.Exp(-float64(n)/1.5)
}

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

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	difficulty {
//		weights <dimension> <weight> [<dimension> <weight>...]
//		long_tokens <tokens>
//		history_tokens <tokens>
//		system_tokens <tokens>
//		cues <dimension> <cue...>
//		add_cues <dimension> <cue...>
//		tier <min_score> <model...>
//	}
//
// Dimensions are length, reasoning, structure, domain and context; cue
// dimensions are reasoning, structure and domain. cues replaces the
// built-in cues of a dimension and add_cues extends them; both may be
// repeated. Each tier line adds a tier; at least one is required.
func (s *Difficulty) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "weights":
			args := d.RemainingArgs()
			if len(args) == 0 || len(args)%2 != 0 {
				return d.ArgErr()
			}
			if s.Weights == nil {
				s.Weights = make(map[string]float64, len(args)/2)
			}
			for i := 0; i < len(args); i += 2 {
				if !slices.Contains(dimNames[:], args[i]) {
					return d.Errf("unknown dimension '%s' in weights (want one of %s)", args[i], strings.Join(dimNames[:], ", "))
				}
				v, err := strconv.ParseFloat(args[i+1], 64)
				if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					return d.Errf("invalid weight value '%s' for %s: want a non-negative number", args[i+1], args[i])
				}
				s.Weights[args[i]] = v
			}
		case "long_tokens", "history_tokens", "system_tokens":
			name := d.Val()
			v, err := intArg(d)
			if err != nil {
				return err
			}
			switch name {
			case "long_tokens":
				s.LongTokens = v
			case "history_tokens":
				s.HistoryTokens = v
			default:
				s.SystemTokens = v
			}
		case "cues", "add_cues":
			name := d.Val()
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			if err := checkCueDimension(args[0]); err != nil {
				return d.Err(err.Error())
			}
			for _, c := range args[1:] {
				if _, err := parseCue(c); err != nil {
					return d.Errf("%s %s: invalid cue '%s': %v", name, args[0], c, err)
				}
			}
			target := &s.AddCues
			if name == "cues" {
				target = &s.Cues
			}
			if *target == nil {
				*target = make(map[string][]string)
			}
			(*target)[args[0]] = append((*target)[args[0]], args[1:]...)
		case "tier":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			v, err := strconv.ParseFloat(args[0], 64)
			if err != nil || math.IsNaN(v) || v < 0 || v > 1 {
				return d.Errf("invalid tier score '%s': want a number from 0 to 1", args[0])
			}
			s.Tiers = append(s.Tiers, DifficultyTier{Min: v, Models: args[1:]})
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// A cue, parsed: its lower-cased bytes, and whether it must start and end
// at a word boundary.
type cue struct {
	text           string
	wordStart, end bool
}

// parseCue lower-cases c and works out its boundaries: a cue that starts
// (ends) with an ASCII letter or digit must start (end) at a word
// boundary, unless it ends with "*", which matches any ending.
func parseCue(c string) (cue, error) {
	prefix := strings.HasSuffix(c, "*")
	t := strings.ToLower(strings.TrimSuffix(c, "*"))
	switch {
	case strings.TrimSpace(t) == "":
		return cue{}, errors.New("empty")
	case len(t) > maxCueBytes:
		return cue{}, fmt.Errorf("longer than %d bytes", maxCueBytes)
	case strings.Contains(t, "*"):
		return cue{}, errors.New("* is only allowed at the end")
	case !utf8.ValidString(t):
		return cue{}, errors.New("invalid UTF-8")
	}
	return cue{
		text:      t,
		wordStart: isWordByte(t[0]),
		end:       !prefix && isWordByte(t[len(t)-1]),
	}, nil
}

// cueMatcher finds the cues of all dimensions in one pass over a text.
type cueMatcher struct {
	m    *foldMatcher
	dims []uint8 // cue → dimension
}

// newCueMatcher builds the matcher of the cues of each dimension.
func newCueMatcher(lists [numDims][]string) (*cueMatcher, error) {
	var pats []matchPattern
	var dims []uint8
	seen := make(map[string]bool)
	for dim, list := range lists {
		for _, c := range list {
			p, err := parseCue(c)
			if err != nil {
				return nil, fmt.Errorf("%s cue %q: %v", dimNames[dim], c, err)
			}
			key := strconv.Itoa(dim) + "\x00" + p.text + "\x00" + strconv.FormatBool(p.end)
			if seen[key] {
				continue
			}
			seen[key] = true
			pats = append(pats, matchPattern{text: p.text, wordStart: p.wordStart, wordEnd: p.end})
			dims = append(dims, uint8(dim))
		}
	}
	if len(pats) > maxCues {
		return nil, fmt.Errorf("%d cues, at most %d allowed", len(pats), maxCues)
	}
	m, err := newFoldMatcher(pats)
	if err != nil {
		return nil, err
	}
	return &cueMatcher{m: m, dims: dims}, nil
}

// count returns the number of distinct cues of each dimension in text.
func (m *cueMatcher) count(text string) [numDims]int {
	var hits [numDims]int
	if len(m.dims) == 0 {
		return hits
	}
	var buf [maxCues / 64]uint64
	found := buf[:bitWords(len(m.dims))]
	sc := m.m.newScan(found, nil)
	sc.feed(text)
	sc.end()
	for w, set := range found {
		for ; set != 0; set &= set - 1 {
			hits[m.dims[w*64+bits.TrailingZeros64(set)]]++
		}
	}
	return hits
}

// Interface guards
var (
	_ Strategy              = (*Difficulty)(nil)
	_ caddy.Provisioner     = (*Difficulty)(nil)
	_ caddy.Validator       = (*Difficulty)(nil)
	_ caddyfile.Unmarshaler = (*Difficulty)(nil)
)
