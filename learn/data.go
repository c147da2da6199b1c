// Package learn holds llm_route's offline learning: reading routing
// evaluation data, training the classifier strategy's model file
// (`caddy llm-route train`) and replaying strategies over the data
// (`caddy llm-route eval`). The strategies themselves live in package
// strategies; this package only drives them.
package learn

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// Record is one prompt of routing data: each model's outcome on it
// (0..1) and, where known, the cost of its call in USD.
//
// Two line formats are read. A routing-eval line:
//
//	{"id": "mbpp.dev.1", "prompt": "…", "scores": {"model": 1.0, …}, "costs": {"model": 0.0109, …}}
//
// and a feedback line, one model's outcome on one prompt (the gateway's
// decision log joined with feedback):
//
//	{"id": "req-1", "prompt": "…", "model": "gpt-4o", "score": 0.8, "cost": 0.002}
//
// Scores are 0..1 in both forms: a rating on a 1..5 scale is (rating−1)/4
// (a score of 1 cannot tell the two scales apart, so none is guessed).
type Record struct {
	ID     string             `json:"id"`
	Prompt string             `json:"prompt"`
	Scores map[string]float64 `json:"scores"`
	Costs  map[string]float64 `json:"costs,omitempty"`

	// Feedback form.
	Model string   `json:"model,omitempty"`
	Score *float64 `json:"score,omitempty"`
	Cost  *float64 `json:"cost,omitempty"`
}

// ReadFile reads the records of a JSONL file.
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return recs, nil
}

// Read reads JSONL records from r. Blank lines are skipped; a line that
// is not a record is an error naming its line number.
func Read(r io.Reader) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var recs []Record
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if rec.Model != "" && rec.Score != nil {
			rec.Scores = map[string]float64{rec.Model: *rec.Score}
			if rec.Cost != nil {
				rec.Costs = map[string]float64{rec.Model: *rec.Cost}
			}
		}
		if len(rec.Scores) == 0 {
			return nil, fmt.Errorf("line %d: no scores (want \"scores\", or \"model\" and \"score\")", n)
		}
		for m, s := range rec.Scores {
			if !(s >= 0 && s <= 1) {
				return nil, fmt.Errorf("line %d: score of %s is %g, want 0..1 (a 1..5 rating r as (r-1)/4)", n, m, s)
			}
		}
		for m, c := range rec.Costs {
			if !(c >= 0 && c <= math.MaxFloat64) {
				return nil, fmt.Errorf("line %d: cost of %s is %g", n, m, c)
			}
		}
		if rec.ID == "" {
			rec.ID = fmt.Sprint(n)
		}
		recs = append(recs, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("no records")
	}
	return recs, nil
}

// Subject is the MMLU subject of an id: its prefix before the last "-".
func Subject(id string) string {
	if i := strings.LastIndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}

// SplitSubjects splits records by subject: the subjects in sorted order,
// alternately to train and test (the first to train), so half the
// subjects are held out whole. It returns the two sets and the test
// subjects.
func SplitSubjects(recs []Record) (train, test []Record, testSubjects []string) {
	seen := map[string]bool{}
	var subjects []string
	for _, r := range recs {
		if s := Subject(r.ID); !seen[s] {
			seen[s] = true
			subjects = append(subjects, s)
		}
	}
	slices.Sort(subjects)
	isTest := map[string]bool{}
	for i, s := range subjects {
		if i%2 == 1 {
			isTest[s] = true
			testSubjects = append(testSubjects, s)
		}
	}
	for _, r := range recs {
		if isTest[Subject(r.ID)] {
			test = append(test, r)
		} else {
			train = append(train, r)
		}
	}
	return train, test, testSubjects
}

// PromptRequest is the request view of a chat completion whose one user
// message is prompt, as the gateway builds it.
func PromptRequest(prompt string) strategies.Request {
	body, _ := json.Marshal(map[string]any{
		"messages": []map[string]string{{"role": "user", "content": prompt}},
	})
	return strategies.BuildRequest("/chat/completions", body)
}

// modelNames returns the models scored in recs, sorted.
func modelNames(recs []Record) []string {
	seen := map[string]bool{}
	var names []string
	for _, r := range recs {
		for m := range r.Scores {
			if !seen[m] {
				seen[m] = true
				names = append(names, m)
			}
		}
	}
	slices.Sort(names)
	return names
}

// checkCosts refuses data that has costs for some of its scores and not
// for others: the cost axis is the data's USD only when every score has
// one, and the share of calls to the strongest model when none has, so a
// few missing costs would turn the whole cost axis into shares.
func checkCosts(recs []Record) error {
	some := false
	for _, r := range recs {
		if len(r.Costs) > 0 {
			some = true
			break
		}
	}
	if !some || hasCosts(recs) {
		return nil
	}
	for _, r := range recs {
		for m := range r.Scores {
			if _, ok := r.Costs[m]; !ok {
				return fmt.Errorf("prompt %q has no cost for %s, while other scores have costs: give a cost with every score, or none", r.ID, m)
			}
		}
	}
	return nil
}

// hasCosts reports whether every record has a cost for each model it
// scores.
func hasCosts(recs []Record) bool {
	for _, r := range recs {
		for m := range r.Scores {
			if _, ok := r.Costs[m]; !ok {
				return false
			}
		}
	}
	return true
}

// modelStats are a model's mean score and price per token over recs.
type modelStats struct {
	Name    string
	Quality float64 // mean score
	Price   float64 // USD per token of prompt + expected output, or relative
	N       int
}

// statsOf returns each model's stats over recs: mean quality, and a
// price per token (the model's costs over the tokens of its prompts plus
// the default expected output). Without costs the prices are relative:
// by rank of mean quality, from 1e-6/n for the weakest of n models to
// 1e-6 for the strongest.
func statsOf(recs []Record, reqs []strategies.Request) []modelStats {
	names := modelNames(recs)
	costs := hasCosts(recs)
	st := make([]modelStats, len(names))
	for i, m := range names {
		var q, c, t float64
		n := 0
		for j, r := range recs {
			s, ok := r.Scores[m]
			if !ok {
				continue
			}
			n++
			q += s
			if costs {
				c += r.Costs[m]
				t += float64(reqs[j].PromptTokens + strategies.DefaultExpectedOutput)
			}
		}
		st[i] = modelStats{Name: m, Quality: q / float64(max(n, 1)), N: n}
		if costs && t > 0 {
			st[i].Price = c / t
		}
	}
	if !costs {
		order := make([]int, len(st))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			switch {
			case st[a].Quality < st[b].Quality:
				return -1
			case st[a].Quality > st[b].Quality:
				return 1
			}
			return 0
		})
		for rank, i := range order {
			st[i].Price = 1e-6 * float64(rank+1) / float64(len(st))
		}
	}
	return st
}
