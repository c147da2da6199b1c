package learn

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// bandit is a synthetic stream: each model answers well with its own
// probability and costs its own price on every prompt.
func bandit(n int, seed uint64) []Record {
	models := []struct {
		name    string
		p, cost float64
	}{{"cheap", 0.3, 0.0001}, {"mid", 0.85, 0.0004}, {"large", 0.9, 0.005}}
	r := rand.New(rand.NewPCG(seed, 1))
	recs := make([]Record, n)
	for i := range recs {
		rec := Record{ID: fmt.Sprint("q", i), Prompt: fmt.Sprintf("question %d: what is %d + %d?", i, i, 2*i),
			Scores: map[string]float64{}, Costs: map[string]float64{}}
		for _, m := range models {
			if r.Float64() < m.p {
				rec.Scores[m.name] = 1
			} else {
				rec.Scores[m.name] = 0
			}
			rec.Costs[m.name] = m.cost
		}
		recs[i] = rec
	}
	return recs
}

// Starting from uninformed priors, adaptive finds the model the
// objective prefers (mid: nearly large's quality at a twelfth of its
// price) and its running quality per cost comes within 10% of that
// model's by 500 prompts.
func TestSimulateBandit(t *testing.T) {
	recs := bandit(800, 3)
	reg := []RegistryModel{ // prices only: no prior quality
		{Name: "cheap", InputPrice: 0.3, OutputPrice: 0.3},
		{Name: "mid", InputPrice: 1.2, OutputPrice: 1.2},
		{Name: "large", InputPrice: 15, OutputPrice: 15},
	}
	rep, err := Simulate(recs, SimOptions{Strategy: []byte(`{"name":"adaptive","seed":9}`), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Models[rep.BestFixed] != "mid" || rep.Models[rep.BestRatio] != "cheap" {
		t.Fatalf("best fixed %s, best ratio %s; want mid and cheap", rep.Models[rep.BestFixed], rep.Models[rep.BestRatio])
	}
	var ns []int
	for _, p := range rep.Points {
		ns = append(ns, p.N)
	}
	if fmt.Sprint(ns) != "[100 200 500 800]" {
		t.Fatalf("checkpoints %v", ns)
	}
	p := rep.Points[2]
	f := p.Fixed[rep.BestFixed]
	if r := (p.Quality / p.Cost) / (f.Quality / f.Cost); r < 0.9 {
		t.Errorf("at 500 prompts: quality per cost %.1f%% of the best fixed model's, want ≥ 90%%", 100*r)
	}
	if mid := rep.Picks[1]; mid < 600 {
		t.Errorf("picks %v: want mid at least 600 of 800 times", rep.Picks)
	}
	// Same seed, same run.
	again, _ := Simulate(recs, SimOptions{Strategy: []byte(`{"name":"adaptive","seed":9}`), Registry: reg})
	if fmt.Sprint(again.Picks) != fmt.Sprint(rep.Picks) {
		t.Errorf("not deterministic: %v then %v", rep.Picks, again.Picks)
	}
}

// The command's report, from files, is golden; a strategy that does not
// learn is refused.
func TestSimulateCommand(t *testing.T) {
	data := writeRecords(t, bandit(250, 4))
	ec := evalCommand()
	var out bytes.Buffer
	ec.SetOut(&out)
	ec.SetArgs([]string{"--simulate", "--data", data, "--strategy", `{"name":"adaptive","context":"none"}`})
	if err := ec.Execute(); err != nil {
		t.Fatal(err)
	}
	golden(t, "simulate_adaptive.txt", out.Bytes())

	ec = evalCommand()
	ec.SetOut(&out)
	ec.SetErr(&out)
	ec.SetArgs([]string{"--simulate", "--data", data, "--strategy", "cheapest"})
	if err := ec.Execute(); err == nil || !strings.Contains(err.Error(), "does not learn online") {
		t.Fatalf("simulating cheapest: %v", err)
	}
}
