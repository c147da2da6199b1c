package strategies

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// matchFind returns the patterns found in text, by id, with the
// matcher of pats.
func matchFind(t testing.TB, pats []matchPattern, pieces ...string) []int {
	t.Helper()
	m, err := newFoldMatcher(pats)
	if err != nil {
		t.Fatalf("newFoldMatcher: %v", err)
	}
	sc := m.newScan(make([]uint64, bitWords(len(pats))), nil)
	for _, p := range pieces {
		sc.feed(p)
	}
	sc.end()
	return matchIDs(sc.found, len(pats))
}

// matchIDs returns the ids in set, which holds ids below n.
func matchIDs(set []uint64, n int) []int {
	ids := []int{}
	for id := range n {
		if hasBit(set, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// matchWords returns substring patterns, without word boundaries.
func matchWords(words ...string) []matchPattern {
	pats := make([]matchPattern, len(words))
	for i, w := range words {
		pats[i] = matchPattern{text: strings.ToLower(w)}
	}
	return pats
}

func TestFoldMatcher(t *testing.T) {
	tests := []struct {
		name  string
		words []string
		text  string
		want  []int
	}{
		{"no patterns", nil, "anything", []int{}},
		{"no patterns, empty text", nil, "", []int{}},
		{"empty text", []string{"a"}, "", []int{}},
		{"one", []string{"hello"}, "say hello world", []int{0}},
		{"none", []string{"hello", "world"}, "help wanted", []int{}},
		{"overlapping", []string{"abc", "bcd", "cde"}, "xabcdex", []int{0, 1, 2}},
		{"overlapping, one missing", []string{"abc", "bcd", "cdf"}, "abcde", []int{0, 1}},
		{"prefixes of one another", []string{"he", "hel", "hell", "hello"}, "hell", []int{0, 1, 2}},
		{"suffixes of one another", []string{"hers", "ers", "rs", "s"}, "ushers", []int{0, 1, 2, 3}},
		{"classic", []string{"he", "she", "his", "hers"}, "ushers", []int{0, 1, 3}},
		{"inside a failed longer match", []string{"abcx", "bc"}, "abcd", []int{1}},
		{"repeated letters", []string{"aab", "aaab"}, "aaaab", []int{0, 1}},
		{"at the start", []string{"hello"}, "hello world", []int{0}},
		{"at the end", []string{"world"}, "hello world", []int{0}},
		{"whole text", []string{"hello"}, "hello", []int{0}},
		{"cut by the end", []string{"hello"}, "say hell", []int{}},
		{"text shorter", []string{"hello"}, "he", []int{}},
		{"duplicates", []string{"go", "Go", "GO"}, "let's go", []int{0, 1, 2}},
		{"ASCII case", []string{"SQL", "select"}, "SeLeCT * from sql_table", []int{0, 1}},
		{"digits and punctuation", []string{"c++", "4.5", "a-b"}, "C++ 4.5 A-B", []int{0, 1, 2}},
		{"spaces", []string{"hi there", " x "}, "oh HI  THERE, hi there X .", []int{0, 1}},
		{"Latin-1 case", []string{"ÉCOLE"}, "à l'École", []int{0}},
		{"Greek case", []string{"σοφία"}, "ΣΟΦΊΑ", []int{0}},
		{"Cyrillic case", []string{"доказать"}, "ДОКАЗАТЬ теорему", []int{0}},
		{"fullwidth case", []string{"ＡＢＣ"}, "ａｂｃ", []int{0}},
		{"Kelvin sign folds to k", []string{"kilo"}, "\u212Ailo", []int{0}},
		{"dotted capital I folds to i", []string{"istanbul"}, "İSTANBUL", []int{0}},
		{"capital sharp s folds to ß", []string{"straße"}, "STRAẞE", []int{0}},
		{"no full case folding", []string{"strasse"}, "STRAẞE straße", []int{}},
		{"Chinese", []string{"你好", "世界", "再见"}, "你好，世界", []int{0, 1}},
		{"Chinese at the end", []string{"界"}, "你好，世界", []int{0}},
		{"Chinese overlap", []string{"微积分", "积分", "分"}, "学习微积分", []int{0, 1, 2}},
		{"mixed scripts", []string{"SQL 查询", "写"}, "写一个 sql 查询", []int{0, 1}},
		{"Hangul and kana", []string{"안녕", "カタカナ"}, "안녕하세요 カタカナ", []int{0, 1}},
		{"emoji", []string{"🙂"}, "ok 🙂", []int{0}},
		{"a byte inside a character", []string{"\xbd"}, "你好\xbd", []int{}}, // strings.ToLower made it U+FFFD
		{"invalid keyword bytes", []string{"\xbd"}, "x\ufffd", []int{0}},
		{"invalid UTF-8 kept", []string{"a\ufffd"}, "A\xff", []int{}},
		{"replacement character", []string{"a\ufffd"}, "A\ufffd", []int{0}},
		{"invalid bytes around a letter", []string{"é"}, "\xe4É\xbd", []int{0}},
		{"newlines", []string{"a\nb"}, "A\nB", []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchFind(t, matchWords(tt.words...), tt.text); !slices.Equal(got, tt.want) {
				t.Errorf("found %v in %q, want %v", got, tt.text, tt.want)
			}
		})
	}
}

func TestFoldMatcherWordBoundaries(t *testing.T) {
	pats := []matchPattern{
		{text: "prove", wordStart: true, wordEnd: true},
		{text: "optimiz", wordStart: true},
		{text: "ing", wordEnd: true},
		{text: "证明"},
	}
	tests := []struct {
		text string
		want []int
	}{
		{"prove it", []int{0}},
		{"PROVE", []int{0}},
		{"(prove).", []int{0}},
		{"improve it", []int{}},
		{"proven", []int{}},
		{"disprove proves", []int{}},
		{"prove2", []int{}},
		{"optimization", []int{1}},
		{"reoptimize", []int{}},
		{"going", []int{2}},
		{"ingest", []int{}},
		{"用prove证明", []int{0, 3}}, // a Chinese character is no letter or digit
		{"\u212Aprove", []int{}},  // the Kelvin sign is a k in lower case
		{"", []int{}},
	}
	for _, tt := range tests {
		if got := matchFind(t, pats, tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("found %v in %q, want %v", got, tt.text, tt.want)
		}
	}
	// A match that waits for a word end waits across pieces too.
	if got := matchFind(t, pats, "so prove", "n"); len(got) != 0 {
		t.Errorf("prove|n: found %v", got)
	}
	if got := matchFind(t, pats, "so prove", " it"); !slices.Equal(got, []int{0}) {
		t.Errorf("prove| it: found %v", got)
	}
}

// late holds the patterns that occur starting after startLate.
func TestFoldMatcherLate(t *testing.T) {
	m, err := newFoldMatcher(matchWords("ab", "b", "zz", "é", "x a", "k"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		first, second string
		found, late   []int
	}{
		{"AB x", "ab É", []int{0, 1, 3}, []int{0, 1, 3}},
		{"AB x", " ab", []int{0, 1, 4}, []int{0, 1}},
		{"AB x", "É", []int{0, 1, 3}, []int{3}},
		{"", "ab", []int{0, 1}, []int{0, 1}},
		{"xa", "b", []int{0, 1}, []int{1}},
		{"\u212Aa", "b", []int{0, 1, 5}, []int{1}}, // the Kelvin sign is 3 bytes, its lower case 1
		{"zz", "", []int{2}, []int{}},
	} {
		found, late := make([]uint64, 1), make([]uint64, 1)
		sc := m.newScan(found, late)
		sc.feed(tt.first)
		sc.startLate()
		sc.feed(tt.second)
		sc.end()
		if got := matchIDs(found, len(m.pats)); !slices.Equal(got, tt.found) {
			t.Errorf("%q+%q: found %v, want %v", tt.first, tt.second, got, tt.found)
		}
		if got := matchIDs(late, len(m.pats)); !slices.Equal(got, tt.late) {
			t.Errorf("%q+%q: late %v, want %v", tt.first, tt.second, got, tt.late)
		}
	}
}

func TestFoldMatcherErrors(t *testing.T) {
	if _, err := newFoldMatcher([]matchPattern{{text: "a"}, {text: ""}}); err == nil {
		t.Error("empty pattern accepted")
	}
	long := strings.Repeat("a", maxWordStartLen+1)
	if _, err := newFoldMatcher([]matchPattern{{text: long, wordStart: true}}); err == nil {
		t.Error("too long a pattern with a word start accepted")
	}
	if _, err := newFoldMatcher([]matchPattern{{text: long}, {text: long[1:], wordStart: true}}); err != nil {
		t.Error(err)
	}
}

// foldLeads must mark the first byte of every character that
// unicode.ToLower changes, or the scan would not lower-case it.
func TestFoldLeads(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r < utf8.RuneSelf || unicode.ToLower(r) == r || !utf8.ValidRune(r) {
			continue
		}
		if b := string(r)[0]; !foldLeads[b] {
			t.Fatalf("%U lowers to %U, but its first byte %#x is not in foldLeads", r, unicode.ToLower(r), b)
		}
	}
	for r := range rune(0x10000) {
		if got, want := lowerChanges[r/64]&(1<<(r%64)) != 0, unicode.ToLower(r) != r; got != want {
			t.Fatalf("lowerChanges(%U) = %v, want %v", r, got, want)
		}
	}
	for r, l := range lowerTab {
		if rune(l) != unicode.ToLower(rune(r)) {
			t.Fatalf("lowerTab[%U] = %U, want %U", r, l, unicode.ToLower(rune(r)))
		}
	}
	// CJK and most Hangul need no lower-casing.
	for _, s := range []string{"你", "好", "の", "カ", "한"} {
		if foldLeads[s[0]] {
			t.Errorf("%s: first byte %#x in foldLeads", s, s[0])
		}
	}
}

// refLower lower-cases s one character at a time, keeping invalid bytes
// as they are; for valid UTF-8 it is strings.ToLower.
func refLower(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if l := unicode.ToLower(r); l != r {
			b.WriteRune(l)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// refFind is the reference of foldMatcher: each pattern searched for at
// every position of the lower-cased text.
func refFind(pats []matchPattern, text string) []int {
	lower := refLower(text)
	found := []int{}
	for id, p := range pats {
		for i := 0; i+len(p.text) <= len(lower); i++ {
			if lower[i:i+len(p.text)] != p.text ||
				p.wordStart && i > 0 && isWordByte(lower[i-1]) ||
				p.wordEnd && i+len(p.text) < len(lower) && isWordByte(lower[i+len(p.text)]) {
				continue
			}
			found = append(found, id)
			break
		}
	}
	return found
}

func TestFoldMatcherMatchesReference(t *testing.T) {
	pats := []matchPattern{
		{text: "ab"}, {text: "abc"}, {text: "bc"}, {text: "b c"}, {text: "abab"}, {text: "c"},
		{text: "证明"}, {text: "证"}, {text: "明a"}, {text: "éa"}, {text: "ék"}, {text: "ab", wordStart: true, wordEnd: true},
		{text: "ca", wordStart: true}, {text: "a-b", wordEnd: true}, {text: "k"}, {text: "i\u0307"},
	}
	alphabet := []string{"a", "b", "c", "A", "B", " ", "-", "é", "É", "证", "明", "1", "\n", "K", "\u212A", "İ", "\xff", "\xe8"}
	rng := rand.New(rand.NewPCG(7, 11))
	for range 5000 {
		var b strings.Builder
		for range rng.IntN(20) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		text := b.String()
		if got, want := matchFind(t, pats, text), refFind(pats, text); !slices.Equal(got, want) {
			t.Fatalf("found %v in %q, want %v", got, text, want)
		}
	}
}

// Feeding a text in pieces cut between characters finds what feeding it
// whole does.
func TestFoldMatcherPieces(t *testing.T) {
	pats := append(matchWords("hello world", "o w", "你好", "d"), matchPattern{text: "world", wordStart: true, wordEnd: true})
	m, err := newFoldMatcher(pats)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"Hello World", "say hello world, 你好", "helloworld", "a world"} {
		whole := m.newScan(make([]uint64, 1), nil)
		whole.feed(text)
		whole.end()
		for i := range len(text) + 1 {
			if i < len(text) && !utf8.RuneStart(text[i]) {
				continue
			}
			sc := m.newScan(make([]uint64, 1), nil)
			sc.feed(text[:i])
			sc.feed(text[i:])
			sc.end()
			if !slices.Equal(sc.found, whole.found) {
				t.Errorf("%q cut at %d: found %v, whole %v", text, i, sc.found, whole.found)
			}
		}
	}
}

// FuzzFoldMatcher compares the matcher with strings.Contains on the
// lower-cased text: pats holds up to 8 patterns separated by '|'; the
// first byte of each sets its word boundaries.
func FuzzFoldMatcher(f *testing.F) {
	f.Add("he|she|his|hers", "ushers")
	f.Add("\x01ab|\x02bc|\x03c", "AB BC abc")
	f.Add("hello|HI THERE|你好", "Oh hi there, 你好 world")
	f.Add("k|é", "\u212A É")
	f.Fuzz(func(t *testing.T, spec, text string) {
		var pats []matchPattern
		for _, s := range strings.Split(spec, "|") {
			if len(pats) == 8 {
				break
			}
			var p matchPattern
			if s != "" && s[0] < 4 {
				p.wordStart, p.wordEnd = s[0]&1 != 0, s[0]&2 != 0
				s = s[1:]
			}
			if p.text = strings.ToLower(s); p.text == "" || len(p.text) > maxWordStartLen {
				continue
			}
			pats = append(pats, p)
		}
		got, want := matchFind(t, pats, text), refFind(pats, text)
		if !slices.Equal(got, want) {
			t.Fatalf("patterns %+v: found %v in %q, want %v", pats, got, text, want)
		}
		// For ASCII, the reference is plainly strings.Contains.
		if isASCII(text) {
			lower := strings.ToLower(text)
			for id, p := range pats {
				if !p.wordStart && !p.wordEnd && slices.Contains(got, id) != strings.Contains(lower, p.text) {
					t.Fatalf("pattern %q in %q: found = %v", p.text, text, slices.Contains(got, id))
				}
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func BenchmarkFoldMatcher(b *testing.B) {
	m, err := newFoldMatcher(matchWords("hello", "hi there", "你好", "thanks", "refactor", "golang",
		"integral", "derivative", "theorem", "微积分", "证明", "translate", "翻译", "sql", "nosql"))
	if err != nil {
		b.Fatal(err)
	}
	ru := strings.Repeat("Пожалуйста, объясните, как работает эта функция. ", 90)[:4<<10]
	for _, tt := range []struct{ name, text string }{
		{"en", reqBenchText(4<<10, false)},
		{"zh", reqBenchText(4<<10, true)},
		{"ru", strings.ToValidUTF8(ru, "")},
	} {
		b.Run(tt.name+"/4KB", func(b *testing.B) {
			b.SetBytes(int64(len(tt.text)))
			b.ReportAllocs()
			found := make([]uint64, bitWords(len(m.pats)))
			for b.Loop() {
				clear(found)
				sc := m.newScan(found, nil)
				sc.feed(tt.text)
				sc.end()
			}
		})
	}
}
