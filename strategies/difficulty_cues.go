package strategies

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
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
		"拓扑", "统计", "数列", "素数", "质数", "不等式", "向量", "极限", "法律", "法规", "合同", "条款", "诉讼", "侵权", "判决", "律师", "医学",
		"临床", "诊断", "症状", "患者", "病人", "药物", "剂量", "治疗", "病理", "金融", "投资", "财务",
		"估值", "期权", "利率", "股票", "基金", "会计", "税务", "现金流", "算法", "复杂度", "动态规划",
		"递归", "图论", "最短路径", "数据结构", "二分", "并发", "分布式", "一致性", "死锁", "加密",
		"编译", "机器学习", "神经网络", "梯度", "量子", "热力学", "化学", "物理",
	},
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

// cuePatterns parses the cues of each dimension into the patterns of a
// matcher, each distinct cue of a dimension once, with the dimension of
// each pattern. It fails on an invalid cue and on more than maxCues.
func cuePatterns(lists [numDims][]string) ([]matchPattern, []uint8, error) {
	var pats []matchPattern
	var dims []uint8
	seen := make(map[string]bool)
	for dim, list := range lists {
		for _, c := range list {
			p, err := parseCue(c)
			if err != nil {
				return nil, nil, fmt.Errorf("%s cue %q: %v", dimNames[dim], c, err)
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
		return nil, nil, fmt.Errorf("%d cues, at most %d allowed", len(pats), maxCues)
	}
	return pats, dims, nil
}

// newCueMatcher builds the matcher of the cues of each dimension.
func newCueMatcher(lists [numDims][]string) (*cueMatcher, error) {
	pats, dims, err := cuePatterns(lists)
	if err != nil {
		return nil, err
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
