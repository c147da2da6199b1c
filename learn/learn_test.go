package learn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/strategies"
)

var update = flag.Bool("update", false, "rewrite the golden files of eval output")

// synthetic makes n prompts of filler words under a known rule: a prompt
// that mentions "integral" is hard (only "large" answers it; "mid" too
// when it also mentions "matrix"), any other is easy (all answer it).
// Costs: small $0.0001, mid $0.001, large $0.01.
func synthetic(n int, seed uint64, models []string) []Record {
	rng := rand.New(rand.NewPCG(seed, 7))
	filler := strings.Fields("please tell me about the river city music bread garden window story color travel friend market " +
		"weather animal letter summer paper table chair road school book water light night green house")
	var recs []Record
	for i := range n {
		var words []string
		for range 5 + rng.IntN(15) {
			words = append(words, filler[rng.IntN(len(filler))])
		}
		hard := rng.IntN(3) == 0
		matrix := rng.IntN(2) == 0
		if hard {
			words = append(words, "integral")
		}
		if matrix {
			words = append(words, "matrix")
		}
		rng.Shuffle(len(words), func(a, b int) { words[a], words[b] = words[b], words[a] })
		all := map[string]float64{"small": 1, "mid": 1, "large": 1}
		if hard {
			all["small"], all["mid"] = 0, 0
			if matrix {
				all["mid"] = 1
			}
		}
		costs := map[string]float64{"small": 0.0001, "mid": 0.001, "large": 0.01}
		r := Record{ID: fmt.Sprintf("syn-%d", i), Prompt: strings.Join(words, " "), Scores: map[string]float64{}, Costs: map[string]float64{}}
		for _, m := range models {
			r.Scores[m], r.Costs[m] = all[m], costs[m]
		}
		recs = append(recs, r)
	}
	return recs
}

func trainSynthetic(t *testing.T, models []string) *strategies.ClassifierModel {
	t.Helper()
	m, err := Train(synthetic(800, 1, models), TrainOptions{Bits: 14, Seed: 3, Rate: 0.1, Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTrainRecoversRule trains on the synthetic rule and checks that the
// classifier with a quality target sends unseen hard prompts to the
// strong model and easy ones to the cheap one, and that along the knob
// hard prompts reach the strong model before easy ones.
func TestTrainRecoversRule(t *testing.T) {
	m := trainSynthetic(t, []string{"small", "large"})
	target := 0.5
	c := &strategies.Classifier{ModelFile: "unused", QualityTarget: &target}
	c.SetModel(m)
	test := synthetic(200, 99, []string{"small", "large"})
	wrong := 0
	for _, r := range test {
		req := PromptRequest(r.Prompt)
		cands := []strategies.Candidate{{Model: "small"}, {Model: "large"}}
		d := c.Select(&req, cands)
		want := "small"
		if r.Scores["small"] == 0 {
			want = "large"
		}
		if cands[0].Model != want {
			wrong++
			t.Logf("%q: picked %s (%s), want %s", r.Prompt, cands[0].Model, d.Reason, want)
		}
		if !strings.HasPrefix(d.Reason, "classifier=") || !strings.HasSuffix(d.Reason, " target=0.5") {
			t.Fatalf("reason %q", d.Reason)
		}
	}
	if wrong > 0 {
		t.Fatalf("%d of %d prompts routed against the rule", wrong, len(test))
	}

	// The knob: at every value, the share of hard prompts sent to the
	// strong model is at least that of easy ones, and some value sends
	// nearly every hard prompt and nearly no easy one there.
	separated := false
	for k := 0.0; k <= 1; k += 0.02 {
		ck := *c
		ck.QualityTarget = nil
		ck = *ck.WithKnob(k)
		var hard, easy, hardN, easyN float64
		for _, r := range test {
			req := PromptRequest(r.Prompt)
			cands := []strategies.Candidate{{Model: "small"}, {Model: "large"}}
			ck.Select(&req, cands)
			strong := 0.0
			if cands[0].Model == "large" {
				strong = 1
			}
			if r.Scores["small"] == 0 {
				hard, hardN = hard+strong, hardN+1
			} else {
				easy, easyN = easy+strong, easyN+1
			}
		}
		if hard/hardN < easy/easyN {
			t.Errorf("knob %.2f: %.2f of hard prompts to the strong model, %.2f of easy ones", k, hard/hardN, easy/easyN)
		}
		separated = separated || hard >= 0.95*hardN && easy <= 0.05*easyN
	}
	if !separated {
		t.Error("no knob value separates hard from easy prompts")
	}
}

// TestTrainFoldsCalibrate: with out-of-fold calibration, a model whose
// outcomes are coin flips unrelated to the prompt is predicted at about
// its mean on unseen prompts, while a model that follows the rule keeps
// predictions that separate hard from easy prompts.
func TestTrainFoldsCalibrate(t *testing.T) {
	recs := synthetic(800, 1, []string{"small", "large"})
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range recs {
		recs[i].Scores["large"] = float64(rng.IntN(2))
	}
	spread := func(m *strategies.ClassifierModel, name string) (lo, hi float64, hard, easy float64) {
		lo, hi = 1, 0
		var nh, ne float64
		for _, r := range synthetic(200, 99, []string{"small"}) {
			req := PromptRequest(r.Prompt)
			p := m.Predict(m.Arm(name), strategies.ClassifierFeatures(&req, m.Bits, nil))
			lo, hi = min(lo, p), max(hi, p)
			if r.Scores["small"] == 0 {
				hard, nh = hard+p, nh+1
			} else {
				easy, ne = easy+p, ne+1
			}
		}
		return lo, hi, hard / nh, easy / ne
	}
	opt := TrainOptions{Bits: 14, Seed: 3, Rate: 0.1, Epochs: 20}
	raw, err := Train(recs, opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.Folds = 3
	cal, err := Train(recs, opt)
	if err != nil {
		t.Fatal(err)
	}
	rawLo, rawHi, _, _ := spread(raw, "large")
	lo, hi, _, _ := spread(cal, "large")
	if hi-lo > 0.1 || lo < 0.35 || hi > 0.65 || !(hi-lo < rawHi-rawLo) {
		t.Errorf("coin-flip model predicted from %.3f to %.3f calibrated (%.3f to %.3f raw), want near 0.5", lo, hi, rawLo, rawHi)
	}
	if _, _, hard, easy := spread(cal, "small"); easy-hard < 0.5 {
		t.Errorf("rule model calibrated: %.3f on hard prompts, %.3f on easy ones", hard, easy)
	}
}

// TestTrainDeterministic: the same data and seed give the same file.
func TestTrainDeterministic(t *testing.T) {
	a, _ := json.Marshal(trainSynthetic(t, []string{"small", "mid", "large"}))
	b, _ := json.Marshal(trainSynthetic(t, []string{"small", "mid", "large"}))
	if !bytes.Equal(a, b) {
		t.Fatal("two trainings with the same seed differ")
	}
	m := trainSynthetic(t, []string{"small", "mid", "large"})
	// The knob's calibration falls from a prohibitive price to none.
	if m.Lambdas[0] <= 1 || m.Lambdas[len(m.Lambdas)-1] != 0 {
		t.Fatalf("lambdas %v", m.Lambdas)
	}
	for i := 1; i < len(m.Lambdas); i++ {
		if m.Lambdas[i] > m.Lambdas[i-1] {
			t.Fatalf("lambdas rise at %d: %v", i, m.Lambdas)
		}
	}
}

// TestModelFileRoundTrip writes a trained model and loads it back.
func TestModelFileRoundTrip(t *testing.T) {
	m := trainSynthetic(t, []string{"small", "large"})
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := strategies.LoadClassifierModel(path)
	if err != nil {
		t.Fatal(err)
	}
	x := strategies.ClassifierFeatures(&strategies.Request{LastUser: "integral of the river", PromptTokens: 10}, m.Bits, nil)
	if a, b := m.Predict(m.Arm("large"), x), got.Predict(got.Arm("large"), x); a != b {
		t.Fatalf("prediction %v after the round trip, %v before", b, a)
	}
}

func writeRecords(t *testing.T, recs []Record) string {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		b, _ := json.Marshal(r)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "data.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestEvalGolden replays each built-in heuristic and the classifier over
// small synthetic sets and compares the printed reports.
func TestEvalGolden(t *testing.T) {
	three := []string{"small", "mid", "large"}
	m := trainSynthetic(t, three)
	b, _ := json.Marshal(m)
	modelFile := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(modelFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	test := synthetic(60, 42, three)
	reg := RegistryFromData(synthetic(400, 1, three))
	two := synthetic(60, 42, []string{"small", "large"})
	for i := range two {
		two[i].Costs = nil
	}
	for _, tc := range []struct {
		name     string
		strategy string
		data     []Record
	}{
		{"eval_classifier.golden", `{"name":"classifier","model_file":"` + modelFile + `"}`, test},
		{"eval_classifier_two.golden", `{"name":"classifier","model_file":"` + modelFile + `"}`, two},
		{"eval_difficulty.golden", `difficulty`, two},
		{"eval_cheapest.golden", `cheapest`, test},
		{"eval_balanced.golden", `balanced`, test},
		{"eval_rules.golden", `{"name":"rules","rules":[{"name":"hard","when":{"keywords":["integral"]},"models":["large"]}],"default":{"models":["small"]}}`, test},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dec bytes.Buffer
			rep, err := Eval(tc.data, EvalOptions{Strategy: strategyJSON(tc.strategy), Registry: reg, Steps: 10, Decisions: &dec})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			rep.Print(&out)
			golden(t, tc.name, out.Bytes())
			// Every decision is written, and rescoring them from the data
			// gives the printed points.
			byID := map[string]Record{}
			for _, r := range tc.data {
				byID[r.ID] = r
			}
			sum := map[string]float64{}
			n := map[string]int{}
			sc := bufio.NewScanner(&dec)
			for sc.Scan() {
				var d struct {
					ID    string   `json:"id"`
					Knob  *float64 `json:"knob"`
					Model string   `json:"model"`
				}
				if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
					t.Fatal(err)
				}
				k := "-"
				if d.Knob != nil {
					k = fmt.Sprint(*d.Knob)
				}
				sum[k] += byID[d.ID].Scores[d.Model]
				n[k]++
			}
			if len(n) != len(rep.Points) {
				t.Fatalf("%d knob values in the decisions, %d points", len(n), len(rep.Points))
			}
			for _, p := range rep.Points {
				k := "-"
				if !math.IsNaN(p.Knob) {
					k = fmt.Sprint(p.Knob)
				}
				if n[k] != len(tc.data) || math.Abs(sum[k]/float64(n[k])-p.Quality) > 1e-9 {
					t.Fatalf("knob %s: %d decisions, rescored quality %v, printed %v", k, n[k], sum[k]/float64(n[k]), p.Quality)
				}
			}
		})
	}
}

// TestPGR checks APGR and CPT on a hand-computed curve.
func TestPGR(t *testing.T) {
	// Weak 0.5, strong 1 (model 0). At 20% strong calls the router
	// recovers 60% of the gap, at 50% 90%.
	pts := []Point{
		{Quality: 0.8, Share: []float64{0.2, 0.8}},
		{Quality: 0.95, Share: []float64{0.5, 0.5}},
	}
	apgr, c50, c80 := PGR(pts, 0, 0.5, 1)
	// Trapezoids: 0.2·0.3 + 0.3·0.75 + 0.5·0.95 = 0.06+0.225+0.475.
	if math.Abs(apgr-0.76) > 1e-12 || math.Abs(c50-0.5/0.6*0.2) > 1e-12 || math.Abs(c80-(0.2+0.3*(0.2/0.3))) > 1e-12 {
		t.Fatalf("APGR %v CPT50 %v CPT80 %v", apgr, c50, c80)
	}
}

// TestAIQ checks the envelope areas on hand-computed points.
func TestAIQ(t *testing.T) {
	singles := []Point{{Cost: 0, Quality: 0.5}, {Cost: 1, Quality: 1}, {Cost: 0.5, Quality: 0.6}}
	router := []Point{{Cost: 0.5, Quality: 0.9}, {Cost: 0.9, Quality: 0.7}}
	r, z := AIQ(router, singles)
	// Zero router: the chord from (0, .5) to (1, 1) lies above (.5, .6):
	// mean 0.75. Router: (0,.5)→(.5,.9)→(1 flat at .9… no: the router has
	// no point at cost 1, so .9 stays): 0.5·0.7 + 0.5·0.9 = 0.8.
	if math.Abs(z-0.75) > 1e-9 || math.Abs(r-0.8) > 1e-9 {
		t.Fatalf("router %v zero %v", r, z)
	}
}

// TestReadFeedback reads the feedback form of a record.
func TestReadFeedback(t *testing.T) {
	recs, err := Read(strings.NewReader(`{"id":"r1","prompt":"hi","model":"m","score":1}` + "\n\n" +
		`{"prompt":"yo","model":"n","score":0.25,"cost":0.5}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Scores["m"] != 1 || recs[1].Scores["n"] != 0.25 || recs[1].Costs["n"] != 0.5 || recs[1].ID != "3" {
		t.Fatalf("%+v", recs)
	}
	for _, bad := range []string{`{"prompt":"x"}`, `{"prompt":"x","scores":{"m":2}}`, `{"prompt":"x","model":"m","score":5}`, `nope`, ``} {
		if _, err := Read(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestSplitSubjects holds out whole subjects, alternately.
func TestSplitSubjects(t *testing.T) {
	var recs []Record
	for _, id := range []string{"mmlu_b-0", "mmlu_a-0", "mmlu_c-1", "mmlu_b-1", "mmlu_a_x-2"} {
		recs = append(recs, Record{ID: id})
	}
	train, test, subjects := SplitSubjects(recs)
	// Sorted: mmlu_a, mmlu_a_x, mmlu_b, mmlu_c → train a, b; test a_x, c.
	if strings.Join(subjects, ",") != "mmlu_a_x,mmlu_c" || len(train) != 3 || len(test) != 2 {
		t.Fatalf("train %v test %v subjects %v", train, test, subjects)
	}
}

// TestTrainOnFeedback trains on feedback records (one model's score of
// one prompt each, as the decision log joined with feedback gives) and
// recovers the same rule.
func TestTrainOnFeedback(t *testing.T) {
	var buf bytes.Buffer
	for _, r := range synthetic(800, 1, []string{"small", "large"}) {
		for _, m := range []string{"small", "large"} {
			b, _ := json.Marshal(map[string]any{"id": r.ID, "prompt": r.Prompt, "model": m, "score": r.Scores[m], "cost": r.Costs[m]})
			buf.Write(b)
			buf.WriteByte('\n')
		}
	}
	recs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Train(recs, TrainOptions{Bits: 14, Seed: 3, Rate: 0.1, Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}
	target := 0.5
	c := &strategies.Classifier{ModelFile: "unused", QualityTarget: &target}
	c.SetModel(m)
	wrong := 0
	test := synthetic(200, 99, []string{"small", "large"})
	for _, r := range test {
		req := PromptRequest(r.Prompt)
		cands := []strategies.Candidate{{Model: "small"}, {Model: "large"}}
		c.Select(&req, cands)
		if (cands[0].Model == "large") != (r.Scores["small"] == 0) {
			wrong++
		}
	}
	if wrong > 0 {
		t.Fatalf("%d of %d prompts routed against the rule", wrong, len(test))
	}
}

// TestEvalConfigRoute replays a route of a JSON Caddy config: its
// strategy and its targets' registry entries.
func TestEvalConfigRoute(t *testing.T) {
	cfg := `{"apps":{"http":{"servers":{"s":{"routes":[{"handle":[{"handler":"llm_route",
		"models":[{"name":"small","input_price":0.1,"output_price":0.1,"quality":0.6},
		          {"name":"large","input_price":10,"output_price":10,"quality":0.9},
		          {"name":"unused","input_price":1,"output_price":1}],
		"routes":[{"name":"r","targets":[{"model":"large"},{"model":"small"}],
		           "strategy":{"name":"rules","rules":[{"name":"hard","when":{"keywords":["integral"]},"models":["large"]}],"default":{"models":["small"]}}},
		          {"name":"plain","targets":[{"model":"small"}]}]}]}]}}}}}`
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := loadHandler(path, "")
	if err != nil {
		t.Fatal(err)
	}
	rt := h.route("r")
	reg := h.targetModels(rt)
	if len(reg) != 2 || reg[0].Name != "large" || reg[1].Name != "small" || reg[0].InputPrice != 10 {
		t.Fatalf("registry %+v", reg)
	}
	rep, err := Eval(synthetic(60, 42, []string{"small", "large"}), EvalOptions{Strategy: rt.Strategy, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	// The rule sends exactly the hard prompts to large: full quality.
	if len(rep.Points) != 1 || rep.Points[0].Quality != 1 || rep.Points[0].Share[0] == 0 {
		t.Fatalf("points %+v", rep.Points)
	}
	// A route without a strategy replays the fallback order.
	plain := h.route("plain")
	h.targetModels(plain)
	if string(plain.Strategy) != `{"name":"fallback"}` {
		t.Fatalf("strategy %s", plain.Strategy)
	}
	if _, err := loadHandler(filepath.Join(t.TempDir(), "none.json"), ""); err == nil {
		t.Error("a missing config loads")
	}
}

// TestEvalSweepsQualityTarget: a classifier set up with a quality_target
// is swept over its target, so the sweep goes from all cheap (target 0:
// any model reaches it) to all strong, instead of printing one row for
// every knob value.
func TestEvalSweepsQualityTarget(t *testing.T) {
	m := trainSynthetic(t, []string{"small", "large"})
	b, _ := json.Marshal(m)
	modelFile := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(modelFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	data := synthetic(100, 42, []string{"small", "large"})
	reg := RegistryFromData(synthetic(400, 1, []string{"small", "large"}))
	rep, err := Eval(data, EvalOptions{Strategy: strategyJSON(`{"name":"classifier","model_file":"` + modelFile + `","quality_target":0.9}`), Registry: reg, Steps: 10})
	if err != nil {
		t.Fatal(err)
	}
	large := slices.Index(rep.Models, "large")
	first, last := rep.Points[0], rep.Points[len(rep.Points)-1]
	if first.Share[large] != 0 || last.Share[large] < 0.9 {
		t.Fatalf("share of large: %v at target 0, %v at target 1", first.Share[large], last.Share[large])
	}
	for i := 1; i < len(rep.Points); i++ {
		if rep.Points[i].Share[large] < rep.Points[i-1].Share[large] {
			t.Fatalf("target %v sends fewer prompts to large than target %v", rep.Points[i].Knob, rep.Points[i-1].Knob)
		}
	}
}

// TestEvalEveryStrategy replays every registered strategy that needs no
// configuration, so none fails or panics offline.
func TestEvalEveryStrategy(t *testing.T) {
	three := []string{"small", "mid", "large"}
	data := synthetic(30, 5, three)
	reg := RegistryFromData(data)
	for _, mi := range caddy.GetModules(strategies.Namespace) {
		name := mi.ID.Name()
		if name == "classifier" || name == "rules" {
			continue // need a model file / rules: covered above
		}
		t.Run(name, func(t *testing.T) {
			rep, err := Eval(data, EvalOptions{Strategy: strategyJSON(name), Registry: reg, Steps: 4})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Points {
				sum := 0.0
				for _, s := range p.Share {
					sum += s
				}
				if math.Abs(sum-1) > 1e-9 {
					t.Fatalf("shares sum to %v: %+v", sum, p)
				}
			}
		})
	}
}

// An eval of adaptive, which samples, is reproducible: without a seed
// in its config it is seeded with 1, as in a simulation.
func TestEvalAdaptiveReproducible(t *testing.T) {
	data := synthetic(60, 3, []string{"small", "mid", "large"})
	reg := RegistryFromData(data)
	var out [2]bytes.Buffer
	for i := range out {
		rep, err := Eval(data, EvalOptions{Strategy: strategyJSON("adaptive"), Registry: reg, Steps: 4})
		if err != nil {
			t.Fatal(err)
		}
		rep.Print(&out[i])
	}
	if out[0].String() != out[1].String() {
		t.Errorf("two evals of adaptive differ:\n%s\n%s", &out[0], &out[1])
	}
}

// TestCommands runs `llm-route train` then `llm-route eval` on files, as
// a user does.
func TestCommands(t *testing.T) {
	dir := t.TempDir()
	train := writeRecords(t, synthetic(300, 1, []string{"small", "large"}))
	test := writeRecords(t, synthetic(40, 2, []string{"small", "large"}))
	model := filepath.Join(dir, "m.json")
	tc := trainCommand()
	tc.SetArgs([]string{"--data", train, "--out", model, "--seed", "7", "--bits", "12"})
	if err := tc.Execute(); err != nil {
		t.Fatal(err)
	}
	dec := filepath.Join(dir, "dec.jsonl")
	ec := evalCommand()
	var out bytes.Buffer
	ec.SetOut(&out)
	ec.SetArgs([]string{"--data", test, "--registry", train, "--steps", "4", "--decisions", dec,
		"--strategy", `{"name":"classifier","model_file":"` + model + `"}`})
	if err := ec.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "APGR ") || !strings.Contains(out.String(), "strategy classifier: 40 prompts, 2 models") {
		t.Fatalf("output:\n%s", out.String())
	}
	b, err := os.ReadFile(dec)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != 5*40 {
		t.Fatalf("%d decisions, want 200", n)
	}
	ec = evalCommand()
	ec.SetOut(&out)
	ec.SetErr(&out)
	ec.SetArgs([]string{"--data", test, "--route", "r"})
	if err := ec.Execute(); err == nil || !strings.Contains(err.Error(), "--route needs --config") {
		t.Fatalf("--route without --config: %v", err)
	}

	// Flags that contradict each other, or are out of range, fields a
	// strategy does not have, and data with costs for some scores only,
	// are refused, not ignored.
	partCosts := filepath.Join(dir, "nocost.jsonl")
	if err := os.WriteFile(partCosts, []byte(`{"id":"x1","prompt":"hi","scores":{"small":1,"large":1}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		train bool
		args  []string
		want  string
	}{
		{false, []string{"--data", test, "--strategy", "balanced", "--steps", "0"}, "--steps"},
		{false, []string{"--data", test, "--strategy", "balanced", "--config", "c.json", "--route", "r"}, "not both"},
		{false, []string{"--data", test, "--config", "c.json", "--route", "r", "--registry", train}, "--registry"},
		{false, []string{"--data", test, "--strategy", "adaptive", "--simulate", "--decisions", dec}, "--decisions"},
		{false, []string{"--data", test, "--strategy", `{"name":"balanced","typo_weight":3}`}, `unknown field "typo_weight"`},
		{false, []string{"--data", test, "--strategy", "balanced", "stray"}, "stray"},
		{false, []string{"--data", test + "," + partCosts, "--strategy", "balanced"}, "no cost for"},
		{true, []string{"--data", train, "--out", model, "--epochs", "-1"}, "--epochs"},
		{true, []string{"--data", train, "--out", model, "--rate", "-0.1"}, "must not be negative"},
		{true, []string{"--data", train, "--out", model, "--folds", "1"}, "--folds"},
	} {
		c := evalCommand()
		if tc.train {
			c = trainCommand()
		}
		c.SetOut(io.Discard)
		c.SetErr(io.Discard)
		c.SetArgs(tc.args)
		if err := c.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one saying %s", tc.args, err, tc.want)
		}
	}
}
