package strategies

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
)

// ClassifierModel is the model file of the classifier strategy, written
// by `caddy llm-route train`. For each model it predicts the probability
// that the model answers a prompt well, by logistic regression over the
// prompt's features (see ClassifierFeatures):
//
//	p_m(x) = sigmoid(Bias_m + (Shared + Weights_m) · x)
//
// Shared weights are learnt from every model's outcomes (what makes a
// prompt hard for all); each model's own weights are what differs for it.
type ClassifierModel struct {
	// Version of the file format: ClassifierVersion.
	Version int `json:"version"`
	// Bits is the log2 of the number of hashed text features.
	Bits int `json:"bits"`
	// Seed the model was trained with.
	Seed int64 `json:"seed"`
	// Shared are the weights common to every model: 2^Bits hashed text
	// features followed by NumClassifierDense dense features.
	Shared Floats `json:"shared"`
	// Models are the per-model predictors.
	Models []ClassifierArm `json:"models"`
	// Lambdas map the knob to a price on quality: Lambdas[i] is the
	// price at knob i/(len-1), calibrated on the training data so that
	// the knob is about the share of the all-premium cost spent. Between
	// grid points the price is interpolated.
	Lambdas []float64 `json:"lambdas"`
}

// ClassifierArm is one model of a ClassifierModel.
type ClassifierArm struct {
	// Name is the registry model name.
	Name string `json:"name"`
	// Bias is the model's intercept (logit).
	Bias float32 `json:"bias"`
	// Scale is the weight of the shared score for this model.
	Scale float32 `json:"scale"`
	// Weights are the model's own weights.
	Weights Floats `json:"weights"`
	// MeanQuality is the model's mean score in the training data.
	MeanQuality float64 `json:"mean_quality"`
	// Price is the model's cost per token of (prompt + expected output),
	// in USD, from the training data; when the data has no costs, a
	// relative price by rank of quality (the strongest model 1e-6). It
	// is used for candidates whose registry entry has no price.
	Price float64 `json:"price"`
}

// ClassifierVersion is the version of the model file format and of its
// features: a model file trained on other features is refused.
const ClassifierVersion = 3

// NumClassifierDense is the number of dense (non-hashed) features.
const NumClassifierDense = 31

// Floats is a float32 vector that JSON holds as base64 of its
// little-endian bytes.
type Floats []float32

// MarshalJSON encodes f as base64.
func (f Floats) MarshalJSON() ([]byte, error) {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

// UnmarshalJSON decodes base64 into f.
func (f *Floats) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	if len(b)%4 != 0 {
		return errors.New("weights: length is not a multiple of 4 bytes")
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	*f = out
	return nil
}

// Dim is the length of a weight vector: the hashed and the dense
// features.
func (m *ClassifierModel) Dim() int { return 1<<m.Bits + NumClassifierDense }

// LoadClassifierModel reads and checks a model file.
func LoadClassifierModel(path string) (*ClassifierModel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m ClassifierModel
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if err := m.Check(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &m, nil
}

// Check reports whether m is a usable model.
func (m *ClassifierModel) Check() error {
	if m.Version != ClassifierVersion {
		return fmt.Errorf("unsupported model version %d (want %d: train the model file again with this version)", m.Version, ClassifierVersion)
	}
	if m.Bits < 4 || m.Bits > 24 {
		return fmt.Errorf("bits must be from 4 to 24, got %d", m.Bits)
	}
	if len(m.Shared) != m.Dim() {
		return fmt.Errorf("shared weights: want %d, got %d", m.Dim(), len(m.Shared))
	}
	if len(m.Models) == 0 {
		return errors.New("no models")
	}
	seen := map[string]bool{}
	for _, a := range m.Models {
		if a.Name == "" || seen[a.Name] {
			return fmt.Errorf("model name %q is empty or repeated", a.Name)
		}
		seen[a.Name] = true
		if len(a.Weights) != m.Dim() {
			return fmt.Errorf("model %s: want %d weights, got %d", a.Name, m.Dim(), len(a.Weights))
		}
		if !(a.Price >= 0 && a.Price <= math.MaxFloat64) {
			return fmt.Errorf("model %s: bad price %g", a.Name, a.Price)
		}
	}
	if len(m.Lambdas) < 2 {
		return errors.New("lambdas: at least two are required")
	}
	for _, l := range m.Lambdas {
		if !(l >= 0 && l <= math.MaxFloat64) {
			return fmt.Errorf("lambdas: bad value %g", l)
		}
	}
	return nil
}

// Arm returns the predictor of the named model, or nil.
func (m *ClassifierModel) Arm(name string) *ClassifierArm {
	for i := range m.Models {
		if m.Models[i].Name == name {
			return &m.Models[i]
		}
	}
	return nil
}

// Lambda is the price on quality for knob k in 0..1.
func (m *ClassifierModel) Lambda(k float64) float64 {
	n := len(m.Lambdas) - 1
	x := min(max(k, 0), 1) * float64(n)
	i := min(int(x), n-1)
	f := x - float64(i)
	return m.Lambdas[i]*(1-f) + m.Lambdas[i+1]*f
}

// Feature is one non-zero feature: its index and value.
type Feature struct {
	Index int32
	Value float32
}

// Predict returns the probability that arm answers well, for features x.
func (m *ClassifierModel) Predict(arm *ClassifierArm, x []Feature) float64 {
	return m.PredictShared(arm, m.SharedScore(x), x)
}

// SharedScore is the shared weights' score of features x, the same for
// every model.
func (m *ClassifierModel) SharedScore(x []Feature) float64 {
	var z float32
	for _, f := range x {
		z += m.Shared[f.Index] * f.Value
	}
	return float64(z)
}

// PredictShared is Predict given the shared score of x.
func (m *ClassifierModel) PredictShared(arm *ClassifierArm, shared float64, x []Feature) float64 {
	var z float32
	for _, f := range x {
		z += arm.Weights[f.Index] * f.Value
	}
	return Sigmoid(float64(arm.Bias) + float64(arm.Scale)*shared + float64(z))
}

// Sigmoid is the logistic function.
func Sigmoid(z float64) float64 {
	if z < -30 {
		z = -30
	} else if z > 30 {
		z = 30
	}
	return 1 / (1 + math.Exp(-z))
}

// featureDifficulty is the difficulty strategy with its shipped defaults,
// whose dimension scores are features of the classifier.
var featureDifficulty = func() *Difficulty {
	d := &Difficulty{Tiers: []DifficultyTier{{Min: 0, Models: []string{"-"}}}}
	if err := d.Provision(caddy.Context{}); err != nil {
		panic(err)
	}
	return d
}()

// ClassifierFeatures appends the features of req to dst and returns it.
// The text is that of the last user message (the whole conversation when
// there is none), and its question is its last paragraph (after the last
// blank line): in a few-shot prompt the examples before it are the same
// for every prompt, and what differs is the question. Features:
//
//   - hashed word unigrams and bigrams of the question (words are runs
//     of letters and digits, lowercased; each Han, Hiragana, Katakana or
//     Hangul character is a word of its own), each occurrence weighted by
//     1/sqrt(words), so a prompt's text features have a bounded norm;
//   - hashed word unigrams of the context before the question, apart
//     from the question's, weighted the same way over the context;
//   - hashed buckets of the question's length and of the difficulty
//     score;
//   - dense features, which do not depend on the subject's vocabulary:
//     lengths (question, prompt, options, stem), digits, numbers, non-ASCII
//     share, lines, code and math characters, multiple-choice options and
//     their shape, question marks, word length, long words, capitals,
//     negation and "which of the following" cues, a fill-in blank, and the
//     difficulty strategy's dimension scores and score (with its shipped
//     defaults).
func ClassifierFeatures(req *Request, bits int, dst []Feature) []Feature {
	text := req.LastUser
	if text == "" {
		text = req.Conversation
	}
	context, q, paragraphs := lastParagraph(text)
	mask := uint64(1)<<bits - 1
	start := len(dst)
	nwords, negation, which := 0, 0, 0
	var prev, prev2 uint64
	eachWord(q, func(h uint64) {
		dst = append(dst, Feature{int32(h & mask), 1})
		if nwords > 0 {
			dst = append(dst, Feature{int32(mix(prev*31+h) & mask), 1})
		}
		switch {
		case h == hashNot || h == hashExcept || h == hashLeast || h == hashFalse || h == hashIncorrect || h == hashNever:
			negation++
		case h == hashFollowing && prev == hashThe && prev2 == hashOf:
			which++
		}
		prev2, prev = prev, h
		nwords++
	})
	// Each occurrence weighs 1/sqrt(words).
	wv := float32(1 / math.Sqrt(float64(max(nwords, 1))))
	for i := start; i < len(dst); i++ {
		dst[i].Value = wv
	}
	// The context before the question: its words apart from the
	// question's (unigrams, hashed with a salt of their own), each
	// occurrence weighing 1/sqrt(words of the context).
	if context != "" {
		start, nctx := len(dst), 0
		eachWord(context, func(h uint64) {
			dst = append(dst, Feature{int32(mix(h^0x43545800) & mask), 1})
			nctx++
		})
		cv := float32(1 / math.Sqrt(float64(max(nctx, 1))))
		for i := start; i < len(dst); i++ {
			dst[i].Value = cv
		}
	}

	sc := featureDifficulty.Assess(req)
	tokens := float64(req.PromptTokens)
	lenBucket := int(math.Log2(float64(len(q))/4 + 1))
	dst = append(dst, Feature{int32(mix(0x4c454e00+uint64(lenBucket)) & mask), 1})
	dst = append(dst, Feature{int32(mix(0x44494600+uint64(sc.Score*20)) & mask), 1})

	var digits, numbers, nonASCII, newlines, code, math_, question, upper, letters, longWords, blank int
	var options, optLen, optMin, optMax, stem int
	optMin = math.MaxInt
	lineStart, inOption, inNumber, wordLen := true, false, false, 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		isLetter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case c >= '0' && c <= '9':
			digits++
			if !inNumber {
				numbers++
			}
		case c >= 'A' && c <= 'Z':
			upper++
			letters++
		case c >= 'a' && c <= 'z':
			letters++
		case c >= 0x80:
			nonASCII++
		case c == '\n':
			newlines++
		case c == '_':
			code++
			if (i == 0 || q[i-1] == ' ') && (i+1 == len(q) || q[i+1] == ' ') {
				blank++
			}
		case c == '{' || c == '}' || c == ';' || c == '`' || c == '#':
			code++
		case c == '+' || c == '*' || c == '/' || c == '^' || c == '=' || c == '<' || c == '>' || c == '$' || c == '\\':
			math_++
		case c == '?':
			question++
		}
		inNumber = c >= '0' && c <= '9' || inNumber && (c == '.' || c == ',')
		if isLetter {
			wordLen++
		} else {
			if wordLen >= 9 {
				longWords++
			}
			wordLen = 0
		}
		if lineStart {
			if isOption(q[i:]) {
				if options == 0 {
					stem = i
				}
				options++
				inOption = true
			} else {
				inOption = false
			}
		}
		if inOption && c != '\n' {
			optLen++
		}
		if c == '\n' && inOption {
			optMin, optMax = min(optMin, optLen), max(optMax, optLen)
			optLen = 0
		}
		lineStart = c == '\n'
	}
	if inOption {
		optMin, optMax = min(optMin, optLen), max(optMax, optLen)
	}
	if options == 0 {
		optMin, stem = 0, len(q)
	}
	n := float64(max(len(q), 1))
	qTokens := float64(len(q)) / 4
	base := int32(mask + 1)
	dense := [NumClassifierDense]float64{
		math.Log1p(qTokens) / 8,
		math.Log1p(tokens) / 8,
		math.Log1p(float64(nwords)) / 6,
		min(float64(digits)/n*5, 1),
		math.Log1p(float64(numbers)) / 3,
		float64(nonASCII) / n,
		math.Log1p(float64(newlines)) / 4,
		math.Log1p(float64(code)) / 5,
		math.Log1p(float64(math_)) / 5,
		min(float64(options)/4, 1.5),
		math.Log1p(float64(optMax)) / 5,
		math.Log1p(float64(optMin)) / 5,
		float64(optMax-optMin) / float64(optMax+1),
		math.Log1p(float64(stem)/4) / 7,
		float64(stem) / n,
		math.Log1p(float64(question)) / 3,
		min(float64(letters)/float64(max(nwords, 1))/10, 2),
		float64(longWords) / float64(max(nwords, 1)),
		float64(upper) / float64(max(letters, 1)),
		math.Log1p(float64(negation)) / 2,
		boolFloat(which > 0),
		boolFloat(blank > 0),
		float64(len(q)) / float64(max(len(text), 1)),
		math.Log1p(float64(paragraphs)) / 3,
		sc.Length, sc.Reasoning, sc.Structure, sc.Domain, sc.Context, sc.Score,
		boolFloat(code > 2 && newlines > 2),
	}
	for i, v := range dense {
		if v != 0 {
			dst = append(dst, Feature{base + int32(i), float32(v)})
		}
	}
	return dst
}

// lastParagraph splits text at its last blank line into the context
// before and the question after it (the whole text is the question when
// it has none, or when what follows is too short to be a question), and
// counts its paragraphs.
func lastParagraph(text string) (context, question string, paragraphs int) {
	paragraphs = 1 + strings.Count(text, "\n\n")
	t := strings.TrimRight(text, " \t\r\n")
	i := strings.LastIndex(t, "\n\n")
	if i < 0 || len(t)-i < 24 {
		return "", t, paragraphs
	}
	return t[:i], t[i+2:], paragraphs
}

// Hashes of the cue words of ClassifierFeatures.
var (
	hashNot, hashExcept, hashLeast, hashFalse, hashIncorrect, hashNever = wordHash("not"), wordHash("except"), wordHash("least"), wordHash("false"), wordHash("incorrect"), wordHash("never")
	hashOf, hashThe, hashFollowing                                      = wordHash("of"), wordHash("the"), wordHash("following")
)

func wordHash(w string) (h uint64) {
	eachWord(w, func(x uint64) { h = x })
	return h
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// isOption reports whether s starts a multiple-choice option: "A.",
// "B)", "(C)", "D:" followed by a space.
func isOption(s string) bool {
	if len(s) >= 4 && s[0] == '(' && s[1] >= 'A' && s[1] <= 'H' && s[2] == ')' {
		return true
	}
	return len(s) >= 3 && s[0] >= 'A' && s[0] <= 'H' && (s[1] == '.' || s[1] == ')' || s[1] == ':') && s[2] == ' '
}

// eachWord calls fn with the hash of each word of text.
func eachWord(text string, fn func(uint64)) {
	const offset, prime = 14695981039346656037, 1099511628211
	h, in := uint64(offset), false
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
				fallthrough
			case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
				h = (h ^ uint64(c)) * prime
				in = true
				continue
			}
			if in {
				fn(mix(h))
				h, in = offset, false
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		switch {
		case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul):
			if in {
				fn(mix(h))
			}
			fn(mix((uint64(offset) ^ uint64(r)) * prime))
			h, in = offset, false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			r = unicode.ToLower(r)
			h = (h ^ uint64(r)) * prime
			in = true
		default:
			if in {
				fn(mix(h))
				h, in = offset, false
			}
		}
	}
	if in {
		fn(mix(h))
	}
}

// mix is a 64-bit finalizer (splitmix64) that spreads a hash's bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
