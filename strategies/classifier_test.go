package strategies

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// handModel is a model with no text weights: the cheap model answers
// well with probability sigmoid(cheapBias), the premium one with
// sigmoid(premiumBias); the knob runs from a prohibitive price on cost
// (knob 0) to none (knob 1).
func handModel(cheapBias, premiumBias float32) *ClassifierModel {
	m := &ClassifierModel{Version: ClassifierVersion, Bits: 4, Lambdas: []float64{10, 0}}
	m.Shared = make(Floats, m.Dim())
	m.Models = []ClassifierArm{
		{Name: "cheap", Bias: cheapBias, Weights: make(Floats, m.Dim()), MeanQuality: 0.5, Price: 1e-7},
		{Name: "premium", Bias: premiumBias, Weights: make(Floats, m.Dim()), MeanQuality: 0.9, Price: 1e-5},
	}
	return m
}

func writeModel(t *testing.T, path string, m *ClassifierModel) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func pick(s Strategy, cands ...string) (string, string) {
	req := Request{LastUser: "What is the capital of France?", PromptTokens: 12}
	var cs []Candidate
	for _, c := range cands {
		cs = append(cs, Candidate{Model: c})
	}
	d := s.Select(&req, cs)
	return cs[0].Model, d.Reason
}

func TestClassifierKnobAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.json")
	writeModel(t, path, handModel(0, 2))
	for _, tc := range []struct {
		knob       float64
		want, why  string
		candidates []string
	}{
		{0, "cheap", "classifier=0.50 knob=0", []string{"premium", "cheap"}},
		{1, "premium", "classifier=0.88 knob=1", []string{"cheap", "premium"}},
		// A candidate the model does not know is predicted at its
		// registry quality (here none: 0.5).
		{1, "premium", "classifier=0.88 knob=1", []string{"other", "premium"}},
	} {
		k := tc.knob
		s := &Classifier{ModelFile: path, Knob: &k}
		if err := s.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		got, why := pick(s, tc.candidates...)
		if got != tc.want || why != tc.why {
			t.Errorf("knob %v: picked %s (%s), want %s (%s)", k, got, why, tc.want, tc.why)
		}
	}

	// A new file, provisioned again as a config reload does: the premium
	// model is now predicted to fail.
	writeModel(t, path, handModel(0, -2))
	k := 1.0
	s := &Classifier{ModelFile: path, Knob: &k}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if got, why := pick(s, "cheap", "premium"); got != "cheap" || why != "classifier=0.50 knob=1" {
		t.Errorf("after the new file: picked %s (%s)", got, why)
	}
}

func TestClassifierTargetAndLowConfidence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.json")
	writeModel(t, path, handModel(0.2, 2)) // cheap 0.55, premium 0.88
	target := 0.5
	s := &Classifier{ModelFile: path, QualityTarget: &target}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if got, why := pick(s, "premium", "cheap"); got != "cheap" || why != "classifier=0.55 target=0.5" {
		t.Errorf("target 0.5: picked %s (%s)", got, why)
	}
	target = 0.9 // nobody reaches it: the best predicted
	if got, _ := pick(s, "cheap", "premium"); got != "premium" {
		t.Errorf("target 0.9: picked %s", got)
	}

	// The cheap pick at 0.55 has confidence 0.1: below 0.3, the premium
	// model (the best mean quality, or the configured list) goes first.
	k := 0.0
	s = &Classifier{ModelFile: path, Knob: &k, MinConfidence: 0.3}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if got, why := pick(s, "cheap", "premium"); got != "premium" || why != "classifier=0.55 knob=0 low_confidence" {
		t.Errorf("low confidence: picked %s (%s)", got, why)
	}
	s.Premium = []string{"other"}
	if got, why := pick(s, "cheap", "premium", "other"); got != "other" || !strings.HasSuffix(why, " low_confidence") {
		t.Errorf("low confidence, premium list: picked %s (%s)", got, why)
	}
	s.MinConfidence = 0.05
	if got, why := pick(s, "cheap", "premium"); got != "cheap" || strings.Contains(why, "low_confidence") {
		t.Errorf("confident: picked %s (%s)", got, why)
	}
}

func TestClassifierValidate(t *testing.T) {
	bad, two := -0.1, 2.0
	for _, tc := range []struct {
		s    Classifier
		want string
	}{
		{Classifier{}, "model_file is required"},
		{Classifier{ModelFile: "m", Knob: &two}, "knob must be from 0 to 1"},
		{Classifier{ModelFile: "m", QualityTarget: &bad}, "quality_target must be from 0 to 1"},
		{Classifier{ModelFile: "m", MinConfidence: 1.5}, "min_confidence must be from 0 to 1"},
		{Classifier{ModelFile: "m", Premium: []string{""}}, "premium: empty model name"},
		{Classifier{ModelFile: "m", ExpectedOutput: -1}, "expected_output must not be negative"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.s, err, tc.want)
		}
	}
	dir := t.TempDir()
	if err := (&Classifier{ModelFile: filepath.Join(dir, "missing.json")}).Provision(caddy.Context{}); err == nil {
		t.Error("a missing model file provisions")
	}
	m := handModel(0, 0)
	m.Models[1].Weights = m.Models[1].Weights[:3]
	path := filepath.Join(dir, "short.json")
	writeModel(t, path, m)
	if err := (&Classifier{ModelFile: path}).Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("want %d weights, got 3", m.Dim())) {
		t.Errorf("a model file with missing weights: %v", err)
	}
	// A file of the first version was trained on other features.
	m = handModel(0, 0)
	m.Version = 1
	writeModel(t, path, m)
	if err := (&Classifier{ModelFile: path}).Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "train the model file again") {
		t.Errorf("a version 1 model file: %v", err)
	}
	// Version 2 files lack the context's words.
	m.Version = 2
	writeModel(t, path, m)
	if err := (&Classifier{ModelFile: path}).Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "train the model file again") {
		t.Errorf("a version 2 model file: %v", err)
	}
	os.WriteFile(path, fmt.Appendf(nil, `{"version":%d,"bits":4,"shared":"!!"}`, ClassifierVersion), 0o644)
	if err := (&Classifier{ModelFile: path}).Provision(caddy.Context{}); err == nil {
		t.Error("a model file with bad base64 provisions")
	}
}

// TestClassifierFeaturesChinese: Chinese text gives word features (one
// per character) and the non-ASCII share.
func TestClassifierFeaturesChinese(t *testing.T) {
	x := ClassifierFeatures(&Request{LastUser: "证明这个定理", PromptTokens: 8}, 10, nil)
	text := 0
	for _, f := range x {
		if f.Index < 1<<10 {
			text++
		}
	}
	// Six characters: six unigrams, five bigrams, plus the two bucket
	// features.
	if text != 6+5+2 {
		t.Fatalf("%d hashed features: %v", text, x)
	}
}

// TestClassifierFeaturesQuestion: the word features are those of the
// question, the last paragraph, and apart from them those of the
// context before it: a few-shot prefix shared by two prompts adds the
// same features to both, and leaves the question's unchanged.
func TestClassifierFeaturesQuestion(t *testing.T) {
	const prefix = "Which gas do plants absorb?\nA) oxygen\nB) carbon dioxide\nAnswer:\nB\n\n"
	const question = "Which planet is closest to the sun?\nA) Venus\nB) Mercury\nAnswer:"
	const other = "What is the boiling point of water at sea level?\nA) 90 C\nB) 100 C\nAnswer:"
	const bits = 16
	// The text features but the difficulty score's bucket, which
	// assesses the whole prompt.
	text := func(prompt string) map[int32]float32 {
		req := &Request{LastUser: prompt, PromptTokens: len(prompt) / 4}
		out := map[int32]float32{}
		for _, f := range ClassifierFeatures(req, bits, nil) {
			if f.Index < 1<<bits {
				out[f.Index] += f.Value
			}
		}
		delete(out, int32(mix(0x44494600+uint64(featureDifficulty.Assess(req).Score*20))&(1<<bits-1)))
		return out
	}
	// added returns the features of with that are not those of without,
	// after checking that every feature of without is in with unchanged.
	added := func(with, without map[int32]float32) map[int32]float32 {
		out := maps.Clone(with)
		for i, v := range without {
			if with[i] != v {
				t.Fatalf("feature %d: %v with the prefix, %v without", i, with[i], v)
			}
			delete(out, i)
		}
		return out
	}
	a := added(text(prefix+question), text(question))
	b := added(text(prefix+other), text(other))
	if len(a) == 0 || !maps.Equal(a, b) {
		t.Fatalf("the prefix adds %v to one question, %v to the other", a, b)
	}
	// The dense features see the question's options and cues.
	dense := func(prompt string) map[int]float32 {
		out := map[int]float32{}
		for _, f := range ClassifierFeatures(&Request{LastUser: prompt, PromptTokens: len(prompt) / 4}, 12, nil) {
			if f.Index >= 1<<12 {
				out[int(f.Index)-1<<12] = f.Value
			}
		}
		return out
	}
	const options, negation, which, blank = 9, 19, 20, 21
	d := dense(question)
	if d[options] != 0.5 || d[negation] != 0 || d[which] != 0 || d[blank] != 0 {
		t.Fatalf("plain question: options %v, negation %v, which %v, blank %v", d[options], d[negation], d[which], d[blank])
	}
	d = dense(prefix + "Which of the following is NOT a planet?\nA) Mars\nB) Pluto\nC) Venus\nD) Earth\nAnswer:")
	if d[options] != 1 || d[negation] == 0 || d[which] != 1 || d[blank] != 0 {
		t.Fatalf("negated question: options %v, negation %v, which %v, blank %v", d[options], d[negation], d[which], d[blank])
	}
	d = dense("The trophy does not fit in the suitcase because _ is too big.\nA) trophy\nB) suitcase")
	if d[blank] != 1 {
		t.Fatalf("fill-in question: blank %v", d[blank])
	}
}

// BenchmarkClassifierSelect4KB is the decision latency of classifier on
// a 4 KB prompt over 11 candidates with a 2^16-feature model. Besides the
// mean it reports the median of the single decisions (p50-ns), which a
// loaded machine's preemptions move less than the mean.
func BenchmarkClassifierSelect4KB(b *testing.B) {
	m := &ClassifierModel{Version: ClassifierVersion, Bits: 16, Lambdas: []float64{10, 0}}
	m.Shared = make(Floats, m.Dim())
	var names []string
	for i := range 11 {
		name := "model-" + string(rune('a'+i))
		names = append(names, name)
		w := make(Floats, m.Dim())
		for j := range w {
			w[j] = float32(j%7) * 0.01
		}
		m.Models = append(m.Models, ClassifierArm{Name: name, Bias: float32(i) / 10, Scale: 1, Weights: w, Price: float64(i+1) * 1e-7})
	}
	s := &Classifier{ModelFile: "bench"}
	s.SetModel(m)
	// Paragraphs: the last one is the question, the others its context.
	prompt := strings.Repeat("Explain why the derivative of x^2 is 2x, step by step, with 3 examples.\n\n", 57)[:4096]
	req := Request{LastUser: prompt, Conversation: prompt, PromptTokens: 1000, TextTokens: 1000}
	cands := make([]Candidate, len(names))
	var took []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		for i, n := range names {
			cands[i] = Candidate{Model: n}
		}
		start := time.Now()
		s.Select(&req, cands)
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
}
