package llmroute

// The README is checked against the code here: every Caddyfile and JSON
// config it shows loads, and what it names (subdirectives, metrics,
// placeholders, response headers, admin paths) is what the code has, in
// both directions. A subdirective, metric, placeholder or header added
// without a line in the README fails these tests, and so does a snippet
// that no longer loads.

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/translate"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// readmeBlock is a fenced code block of README.md.
type readmeBlock struct {
	lang string
	line int // of the first line of its text
	text string
}

// readmeBlocks returns the fenced code blocks of README.md, their text
// unindented by the fence's indentation.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var blocks []readmeBlock
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " \t")
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		indent := lines[i][:len(lines[i])-len(trimmed)]
		b := readmeBlock{lang: strings.TrimPrefix(trimmed, "```"), line: i + 2}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, strings.TrimPrefix(lines[i], indent))
		}
		b.text = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, b)
	}
	return blocks
}

// readmeCode is all the code of README.md: its code blocks and its
// inline code spans, where names of options, metrics and the like are.
func readmeCode(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, b := range readmeBlocks(t) {
		sb.WriteString(b.text)
	}
	for _, m := range regexp.MustCompile("`[^`\n]+`").FindAllString(string(data), -1) {
		sb.WriteString(m + "\n")
	}
	return sb.String()
}

// stripComments drops the comments of Caddyfile text.
func stripComments(text string) string {
	var sb strings.Builder
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, "#"); i >= 0 && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t') {
			l = l[:i]
		}
		sb.WriteString(l + "\n")
	}
	return sb.String()
}

// syntaxPlaceholder is a <placeholder> of a syntax block (llm_route's and
// llm_mock's grammars): such a block describes the syntax and is no
// config to load.
var syntaxPlaceholder = regexp.MustCompile(`<[a-zA-Z][a-zA-Z .]*>`)

func isSyntaxBlock(b readmeBlock) bool {
	return b.lang == "caddyfile" && syntaxPlaceholder.MatchString(stripComments(b.text))
}

// firstWord is the first token of the first line of text that is not
// blank or a comment.
func firstWord(text string) string {
	for _, l := range strings.Split(stripComments(text), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			return f[0]
		}
	}
	return ""
}

// inExample places a README fragment where a user would paste it into
// Caddyfile.example: an llm_route subdirective (route, provider, model, …)
// at the end of its llm_route block, a strategy into a route of its
// models, a site directive (log) into its gateway site. What needs the
// network is pointed at loopback (a provider discovering the models of
// api.openai.com), files at a temporary directory (log files, a
// classifier's model file).
func inExample(t *testing.T, b readmeBlock) string {
	t.Helper()
	data, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	example := string(data)
	snippet := b.text
	word := firstWord(snippet)
	var cfg string
	switch {
	case word == "{" || strings.HasSuffix(strings.TrimSpace(strings.SplitN(stripComments(snippet), "\n", 2)[0]), "{") &&
		(strings.Contains(word, ":") || strings.Contains(word, ".")):
		cfg = snippet // a whole Caddyfile: global options, sites
	case word == "strategy":
		cfg = insertBefore(t, example, "\n\t}\n}\n", indent("route docs_fragment {\n\tmodels small large claude-mock\n"+snippet+"}\n", "\t\t"), 1)
	case word == "log":
		cfg = insertBefore(t, example, "\n\t}\n}\n", indent(snippet, "\t"), 4)
	case handlerSubdirectives(t)[word]:
		cfg = insertBefore(t, example, "\n\t}\n}\n", indent(snippet, "\t\t"), 1)
	default:
		t.Fatalf("README.md:%d: a caddyfile block starting with %q is neither a whole Caddyfile nor a fragment of Caddyfile.example's llm_route block", b.line, word)
	}
	dir := t.TempDir()
	cfg = regexp.MustCompile(`(output file )(\S+)`).ReplaceAllStringFunc(cfg, func(m string) string {
		return "output file " + filepath.Join(dir, filepath.Base(strings.TrimPrefix(m, "output file ")))
	})
	cfg = strings.ReplaceAll(cfg, "https://api.openai.com", "https://127.0.0.1:1")
	if strings.Contains(cfg, "/etc/caddy/router.json") {
		cfg = strings.ReplaceAll(cfg, "/etc/caddy/router.json", writeClassifierModel(t))
	}
	return cfg
}

// insertBefore inserts s into Caddyfile.example's text at the end of its
// llm_route block (mark "\n\t}\n}\n": the block's end and its site's),
// at offset in the mark.
func insertBefore(t *testing.T, text, mark, s string, offset int) string {
	t.Helper()
	start := strings.Index(text, "\n\tllm_route {\n")
	i := strings.Index(text[max(start, 0):], mark)
	if start < 0 || i < 0 {
		t.Fatalf("Caddyfile.example has no llm_route block ending in %q", mark)
	}
	i += start + offset
	return text[:i] + s + text[i:]
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// validateCaddyfile adapts a Caddyfile and validates the config as `caddy
// adapt --validate` and `caddy validate` do: every module provisioned and
// validated, nothing started.
func validateCaddyfile(cfgText string) error {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfgText), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return err
	}
	return validateJSON(out)
}

func validateJSON(raw []byte) error {
	var cfg caddy.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

// TestReadmeCaddyfiles loads every Caddyfile of the README, a whole one as
// it is and a fragment pasted into Caddyfile.example, as a user would.
func TestReadmeCaddyfiles(t *testing.T) {
	n := 0
	for _, b := range readmeBlocks(t) {
		if b.lang != "caddyfile" || isSyntaxBlock(b) {
			continue
		}
		n++
		t.Run("README.md:"+strconv.Itoa(b.line), func(t *testing.T) {
			cfg := inExample(t, b)
			if err := validateCaddyfile(cfg); err != nil {
				t.Errorf("README.md:%d does not load: %v\n%s", b.line, err, b.text)
			}
		})
	}
	if n < 10 {
		t.Fatalf("found only %d Caddyfile snippets in README.md", n)
	}
}

// TestReadmeJSONConfig loads the README's JSON handler config.
func TestReadmeJSONConfig(t *testing.T) {
	found := false
	for _, b := range readmeBlocks(t) {
		if b.lang != "json" || !strings.Contains(b.text, `"handler": "llm_route"`) {
			continue
		}
		found = true
		cfg := `{"apps":{"http":{"servers":{"docs":{"listen":[":8080"],"routes":[{"handle":[` + b.text + `]}]}}}}}`
		if err := validateJSON([]byte(cfg)); err != nil {
			t.Errorf("README.md:%d does not load: %v", b.line, err)
		}
	}
	if !found {
		t.Fatal("no JSON llm_route config in README.md")
	}
}

// caddyfileWords collects, from the Go files of dirs, the string literals
// of the functions that read Caddyfile tokens (and the maps of
// subdirectives some of them consult): all literals, and those that are
// case labels (the subdirectives and keywords a parser switches on).
func caddyfileWords(t *testing.T, dirs ...string) (all, cases map[string]bool) {
	t.Helper()
	parsers := regexp.MustCompile(`^(UnmarshalCaddyfile|unmarshalCaddyfile|parseCaddyfile|unmarshalState|unmarshalJudge|unmarshalDecisionLog|UnmarshalLimit|Set|parseRoute|parseModel|parseKey|parseHedge|parseRule|parseRuleAction|parseRuleCondition|parseRuleConditionBlock|parseRuleField|parseDashboard|statusArgs|onOffArg)$`)
	ident := regexp.MustCompile(`^[$a-z][a-z0-9_]*$`)
	all, cases = map[string]bool{}, map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			collect := func(n ast.Node) {
				ast.Inspect(n, func(n ast.Node) bool {
					switch n := n.(type) {
					case *ast.BasicLit:
						if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING && ident.MatchString(s) {
							all[s] = true
						}
					case *ast.CaseClause:
						for _, e := range n.List {
							if l, ok := e.(*ast.BasicLit); ok && l.Kind == token.STRING {
								if s, err := strconv.Unquote(l.Value); err == nil && ident.MatchString(s) {
									cases[s] = true
								}
							}
						}
					}
					return true
				})
			}
			for _, decl := range f.Decls {
				switch decl := decl.(type) {
				case *ast.FuncDecl:
					if parsers.MatchString(decl.Name.Name) || strings.Contains(filepath.Base(file), "caddyfile") {
						collect(decl)
					}
				case *ast.GenDecl:
					for _, spec := range decl.Specs {
						if vs, ok := spec.(*ast.ValueSpec); ok && len(vs.Names) == 1 && strings.HasSuffix(vs.Names[0].Name, "irectives") {
							collect(vs)
							ast.Inspect(vs, func(n ast.Node) bool {
								if kv, ok := n.(*ast.KeyValueExpr); ok {
									if l, ok := kv.Key.(*ast.BasicLit); ok {
										s, _ := strconv.Unquote(l.Value)
										cases[s] = true
									}
								}
								return true
							})
						}
					}
				}
			}
		}
	}
	return all, cases
}

// handlerSubdirectives are the subdirectives of an llm_route block.
func handlerSubdirectives(t *testing.T) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "caddyfile.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		if fd, ok := decl.(*ast.FuncDecl); ok && fd.Name.Name == "UnmarshalCaddyfile" {
			ast.Inspect(fd, func(n ast.Node) bool {
				if cc, ok := n.(*ast.CaseClause); ok {
					for _, e := range cc.List {
						if l, ok := e.(*ast.BasicLit); ok && l.Kind == token.STRING {
							s, _ := strconv.Unquote(l.Value)
							set[s] = true
						}
					}
				}
				return true
			})
		}
	}
	if !set["route"] || !set["provider"] {
		t.Fatalf("no route or provider subdirective found in caddyfile.go: %v", set)
	}
	return set
}

// TestReadmeSubdirectives checks the README's syntax blocks (llm_route's,
// llm_mock's) against the Caddyfile parsers: every subdirective and
// keyword a parser switches on is named in the README, and every line of
// a syntax block starts with one the parsers know.
func TestReadmeSubdirectives(t *testing.T) {
	all, cases := caddyfileWords(t, ".", "upstreams", "limits", "strategies", "mock")
	code := readmeCode(t)
	for _, w := range slices.Sorted(func(yield func(string) bool) {
		for w := range cases {
			if !yield(w) {
				return
			}
		}
	}) {
		if !regexp.MustCompile(`(^|[^a-z0-9_])` + regexp.QuoteMeta(w) + `($|[^a-z0-9_])`).MatchString(code) {
			t.Errorf("the Caddyfile parsers read %q, which README.md never names", w)
		}
	}
	directives := map[string]bool{"llm_route": true, "llm_mock": true, "llm_route_dashboard": true}
	syntax := 0
	for _, b := range readmeBlocks(t) {
		if !isSyntaxBlock(b) {
			continue
		}
		syntax++
		for i, l := range strings.Split(stripComments(b.text), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 || f[0] == "}" || f[0] == "}]" || strings.HasPrefix(f[0], "<") {
				continue
			}
			if !all[f[0]] && !directives[f[0]] {
				t.Errorf("README.md:%d: %q is no subdirective the Caddyfile parsers know", b.line+i, f[0])
			}
		}
	}
	if syntax < 2 {
		t.Fatalf("found %d syntax blocks in README.md, want llm_route's and llm_mock's", syntax)
	}
}

// TestReadmeMetrics checks the README's table of metrics against the
// metrics llm_route registers: the same names, with the same labels.
func TestReadmeMetrics(t *testing.T) {
	got := map[string]string{}
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range metrics.all {
			c.Describe(ch)
		}
		close(ch)
	}()
	descRE := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		labels := strings.Split(m[2], ",")
		for i := range labels {
			labels[i] = strings.TrimSpace(labels[i])
		}
		got[m[1]] = strings.Join(labels, ", ")
	}
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(llm_route_[a-z_]+)` \\| ([^|]*) \\|").FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	for name, labels := range got {
		doc, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("metric %s (labels %s) is not in README.md's table", name, labels)
		case doc != labels:
			t.Errorf("metric %s: README.md lists the labels %q, the code has %q", name, doc, labels)
		}
	}
	for name := range documented {
		if _, ok := got[name]; !ok {
			t.Errorf("README.md lists the metric %s, which llm_route does not register", name)
		}
	}
	// Other llm_route_ names the README gives (in text, not the table)
	// must be metrics too.
	for _, m := range regexp.MustCompile("`(llm_route_[a-z_]+)(\\{[^`]*)?`").FindAllStringSubmatch(string(data), -1) {
		if _, ok := got[m[1]]; !ok && m[1] != "llm_route_dashboard" {
			t.Errorf("README.md names %s, which is no metric", m[1])
		}
	}
}

// TestReadmePlaceholdersAndHeaders checks the {llm.*} placeholders and
// X-LLM-* response headers named in the README against the code.
func TestReadmePlaceholdersAndHeaders(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)

	// Placeholders: every one the replacer answers is documented, and
	// every documented one answers.
	p := &placeholders{}
	p.v.Store(&placeholderValues{key: new(string)})
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`\{llm\.([a-z_.*]+)\}`).FindAllStringSubmatch(readme, -1) {
		if strings.Contains(m[1], "*") {
			continue
		}
		documented[m[1]] = true
		if _, ok := p.get("llm." + m[1]); !ok {
			t.Errorf("README.md names {llm.%s}, which is no placeholder", m[1])
		}
	}
	_, cases := caseLabels(t, "placeholders.go", "get")
	for name := range cases {
		if !documented[name] {
			t.Errorf("placeholder {llm.%s} is not in README.md", name)
		}
	}

	// Response headers: those the code sets are documented, and the
	// README's X-LLM-* names are the code's (or example names a config
	// gives to a request header of its own).
	code := map[string]bool{}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	hdr := regexp.MustCompile(`(?i)^x-llm-[a-z-]+$`)
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if l, ok := n.(*ast.BasicLit); ok && l.Kind == token.STRING {
				if s, _ := strconv.Unquote(l.Value); hdr.MatchString(s) {
					code[strings.ToLower(s)] = true
				}
			}
			return true
		})
	}
	if len(code) < 5 {
		t.Fatalf("found only %v X-LLM-* headers in the code", code)
	}
	inReadme := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?i)x-llm-[a-z-]*[a-z]`).FindAllString(readme, -1) {
		inReadme[strings.ToLower(m)] = true
	}
	// Names the README gives to headers of the operator's choosing
	// (model_to_header, strategy_header), not response headers.
	configured := map[string]bool{"x-llm-strategy": true, "x-llm-requested-model": true}
	for h := range code {
		if !inReadme[h] {
			t.Errorf("the code sets %s, which README.md does not document", h)
		}
	}
	for h := range inReadme {
		if !code[h] && !configured[h] {
			t.Errorf("README.md names %s, which the code never sets", h)
		}
	}
}

// caseLabels returns the string case labels of the function fn in file.
func caseLabels(t *testing.T, file, fn string) (*ast.FuncDecl, map[string]bool) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		ast.Inspect(fd, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if l, ok := e.(*ast.BasicLit); ok && l.Kind == token.STRING {
						s, _ := strconv.Unquote(l.Value)
						set[s] = true
					}
				}
			}
			return true
		})
		return fd, set
	}
	t.Fatalf("no func %s in %s", fn, file)
	return nil, nil
}

// TestReadmeAdminPaths checks the admin API paths of the README against
// the ones the admin module serves.
func TestReadmeAdminPaths(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, served := caseLabels(t, "admin.go", "serve")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:2019|^|[ (`+"`"+`])(/llm_route/[a-z_]*)`).FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = true
	}
	for path := range served {
		if !documented[path] {
			t.Errorf("the admin API serves %s, which README.md does not document", path)
		}
	}
	for path := range documented {
		if !served[path] {
			t.Errorf("README.md names the admin path %s, which the admin API does not serve", path)
		}
	}
}

// blockWords are the first words of the lines of a Caddyfile block.
func blockWords(text string) map[string]bool {
	set := map[string]bool{}
	for _, l := range strings.Split(stripComments(text), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			set[f[0]] = true
		}
	}
	return set
}

// TestReadmeBlocksComplete checks that the README's syntax of a block
// lists every subdirective its parser reads: llm_route's grammar (with its
// provider, model, route, key, state and decision_log blocks), llm_mock's,
// the dashboard's, and each strategy's example block.
func TestReadmeBlocksComplete(t *testing.T) {
	find := func(first, second string) readmeBlock {
		t.Helper()
		for _, b := range readmeBlocks(t) {
			f := strings.Fields(strings.SplitN(strings.TrimSpace(stripComments(b.text)), "\n", 2)[0])
			if b.lang == "caddyfile" && len(f) > 0 && f[0] == first && (second == "" || len(f) > 1 && f[1] == second) {
				return b
			}
		}
		t.Fatalf("README.md has no caddyfile block starting with %q %q", first, second)
		return readmeBlock{}
	}
	union := func(sets ...map[string]bool) map[string]bool {
		u := map[string]bool{}
		for _, s := range sets {
			for k := range s {
				u[k] = true
			}
		}
		return u
	}
	labels := func(file, fn string) map[string]bool {
		_, set := caseLabels(t, file, fn)
		return set
	}
	provider := map[string]bool{}
	_, cases := caddyfileWords(t, "upstreams")
	for w := range cases {
		provider[w] = true
	}
	checks := []struct {
		block readmeBlock
		want  map[string]bool
	}{
		{find("llm_route", "[<matcher>]"), union(
			labels("caddyfile.go", "UnmarshalCaddyfile"), labels("caddyfile.go", "parseModel"),
			labels("caddyfile.go", "parseRoute"), labels("caddyfile.go", "parseKey"),
			labels("state.go", "unmarshalState"), labels("record.go", "unmarshalDecisionLog"), provider)},
		{find("llm_mock", ""), labels("mock/caddyfile.go", "UnmarshalCaddyfile")},
		{find("example.com", ""), labels("dashboard.go", "UnmarshalCaddyfile")},
		{find("strategy", "rules"), labels("strategies/rules_caddyfile.go", "UnmarshalCaddyfile")},
		{find("strategy", "difficulty"), labels("strategies/difficulty_caddyfile.go", "UnmarshalCaddyfile")},
		{find("strategy", "classifier"), labels("strategies/classifier.go", "UnmarshalCaddyfile")},
		{find("strategy", "adaptive"), labels("strategies/adaptive_caddyfile.go", "UnmarshalCaddyfile")},
		{find("strategy", "cascade"), union(labels("strategies/cascade.go", "UnmarshalCaddyfile"), labels("strategies/answer.go", "unmarshalJudge"))},
		{find("strategy", "consensus"), labels("strategies/consensus.go", "UnmarshalCaddyfile")},
	}
	for _, c := range checks {
		have := blockWords(c.block.text)
		for _, w := range slices.Sorted(maps.Keys(c.want)) {
			if !have[w] {
				t.Errorf("README.md:%d: the block does not list %q, which its parser reads", c.block.line, w)
			}
		}
	}
}

// TestReadmeDefaults checks the defaults the llm_route syntax block
// gives (`# …; default 5m`) against the values a handler is provisioned
// with, and the defaults of other blocks against the code's constants.
func TestReadmeDefaults(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	grammar := ""
	for _, b := range readmeBlocks(t) {
		if isSyntaxBlock(b) && firstWord(b.text) == "llm_route" {
			grammar = b.text
		}
	}
	if grammar == "" {
		t.Fatal("README.md has no llm_route syntax block")
	}
	documented := map[string]string{}
	re := regexp.MustCompile(`^\s*([a-z_]+)\b[^#]*#.*?\bdefault:? ([^;,(]+?)\s*(?:[;,(]|$)`)
	for _, l := range strings.Split(grammar, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			documented[m[1]] = m[2]
		}
	}
	dashboard := ""
	for _, b := range readmeBlocks(t) {
		if strings.Contains(b.text, "llm_route_dashboard {") {
			dashboard = b.text
		}
	}
	for _, l := range strings.Split(dashboard, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			documented["dashboard "+m[1]] = m[2]
		}
	}

	h := mustLoadHandler(t, `{}`)
	if i := strings.Index(readme, "Higress model-router's list"); i < 0 {
		t.Error("README.md does not list the default enable_on_path_suffix")
	} else if span := regexp.MustCompile("`([^`]+)`").FindStringSubmatch(readme[i:]); span == nil ||
		strings.Join(strings.Fields(span[1]), " ") != strings.Join(h.EnableOnPathSuffix, " ") {
		t.Errorf("README.md's default enable_on_path_suffix is %q, the code's %q", span, h.EnableOnPathSuffix)
	}
	dur := func(d caddy.Duration) string { return time.Duration(d).String() }
	statuses := func(codes []int) string {
		var s []string
		for _, c := range codes {
			if c < 10 {
				s = append(s, strconv.Itoa(c)+"xx")
			} else {
				s = append(s, strconv.Itoa(c))
			}
		}
		return strings.Join(s, " ")
	}
	want := map[string]string{
		"max_body":            strconv.FormatInt(h.MaxBody>>20, 10) + "MiB",
		"max_depth":           strconv.Itoa(h.MaxDepth),
		"first_byte_timeout":  dur(h.FirstByteTimeout),
		"stream_idle_timeout": dur(h.StreamIdleTimeout),
		"read_body_timeout":   dur(h.ReadBodyTimeout),
		"retry_on":            statuses(h.RetryOn),
		"retries":             strconv.Itoa(h.Retries),
		"max_retry_wait":      strconv.Itoa(int(h.MaxRetryWait)),
		"cooldown":            dur(h.Cooldown),
		"fail_threshold":      strconv.Itoa(h.FailThreshold),
		"probe_interval":      dur(h.ProbeInterval),
		"ramp":                dur(h.Ramp),
		"timeout":             limits.DefaultRedisTimeout.String(),
		"prefix":              limits.DefaultRedisPrefix,
		"sync_interval":       upstreams.DefaultSyncInterval.String(),
		"models_refresh":      upstreams.DefaultModelsRefresh.String(),
		"models_timeout":      upstreams.DefaultModelsTimeout.String(),
		"default_max_tokens":  strconv.Itoa(translate.DefaultMaxTokens),
		"prompt_bytes":        "0",
		"dashboard records":   strconv.Itoa(mustProvisionDashboard(t).Records),
		"dashboard refresh":   dur(mustProvisionDashboard(t).Refresh),
	}
	for name, w := range want {
		doc, ok := documented[name]
		if !ok {
			t.Errorf("README.md's syntax block gives no default for %s (the code's is %s)", name, w)
			continue
		}
		if d, err := caddy.ParseDuration(doc); err == nil && !strings.ContainsAny(w, "MiB") {
			if wd, err := time.ParseDuration(w); err == nil && d == wd {
				continue
			}
		}
		if doc != w {
			t.Errorf("README.md says %s defaults to %q, the code's default is %q", name, doc, w)
		}
	}
}

func mustProvisionDashboard(t *testing.T) *Dashboard {
	t.Helper()
	d := new(Dashboard)
	if err := d.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Cleanup() })
	return d
}

// TestReadmeErrorCodes checks that every error code llm_route writes
// (writeError, errorBody, badRequest, a requestError's code) is named in
// the README, and that every code of the README's table of errors is one
// the code writes.
func TestReadmeErrorCodes(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	codeArg := map[string]int{"writeError": 3, "errorBody": 2, "badRequest": 0}
	sent, literals := map[string]bool{}, map[string]bool{}
	lit := func(e ast.Expr) (string, bool) {
		l, ok := e.(*ast.BasicLit)
		if !ok || l.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(l.Value)
		return s, err == nil
	}
	files, _ := filepath.Glob("*.go")
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, ok := lit(n); ok {
					literals[s] = true
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok {
					if i, ok := codeArg[id.Name]; ok && i < len(n.Args) {
						if s, ok := lit(n.Args[i]); ok {
							sent[s] = true
						}
					}
				}
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "requestError" {
					for _, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok && fmt.Sprint(kv.Key) == "code" {
							if s, ok := lit(kv.Value); ok {
								sent[s] = true
							}
						}
					}
				}
			case *ast.AssignStmt:
				for i, l := range n.Lhs {
					if id, ok := l.(*ast.Ident); ok && id.Name == "code" && i < len(n.Rhs) {
						if s, ok := lit(n.Rhs[i]); ok {
							sent[s] = true
						}
					}
				}
			}
			return true
		})
	}
	if len(sent) < 15 {
		t.Fatalf("found only %d error codes in the code: %v", len(sent), sent)
	}
	for _, c := range slices.Sorted(maps.Keys(sent)) {
		if !strings.Contains(readme, "`"+c+"`") {
			t.Errorf("llm_route writes the error code %q, which README.md does not name", c)
		}
	}
	start := strings.Index(readme, "| status | code | when |")
	if start < 0 {
		t.Fatal("README.md has no table of errors")
	}
	table := readme[start:]
	table = table[:strings.Index(table, "\n\n")]
	for _, row := range strings.Split(table, "\n")[2:] {
		cells := strings.Split(row, "|")
		for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(cells[2], -1) {
			if !literals[m[1]] {
				t.Errorf("README.md's table of errors lists %q, which llm_route never writes", m[1])
			}
		}
	}
}

// TestReadmeLogFields checks that every field of the records llm_route
// writes into the decision log (decisions and feedback) and the access
// log is named in the README.
func TestReadmeLogFields(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	fields := map[string]bool{}
	for _, file := range []string{"record.go", "placeholders.go", "feedback.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if fd, ok := n.(*ast.FuncDecl); ok {
				// The records' fields, not the debug lines.
				return fd.Name.Name == "MarshalLogObject" || fd.Name.Name == "serveFeedback"
			}
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, _ := sel.X.(*ast.Ident)
			logging := x != nil && x.Name == "zap" || strings.HasPrefix(sel.Sel.Name, "Add")
			if l, ok := call.Args[0].(*ast.BasicLit); ok && l.Kind == token.STRING && logging {
				s, _ := strconv.Unquote(l.Value)
				fields[s] = true
			}
			return true
		})
	}
	if len(fields) < 30 {
		t.Fatalf("found only %d log fields: %v", len(fields), fields)
	}
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		if !strings.Contains(readme, "`"+f+"`") && !strings.Contains(readme, `"`+f+`"`) {
			t.Errorf("llm_route logs the field %q, which README.md does not name", f)
		}
	}
}

// TestReadmeStrategies checks the README's table of strategies against
// the strategy modules registered.
func TestReadmeStrategies(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start := strings.Index(readme, "| strategy | options | orders by |")
	if start < 0 {
		t.Fatal("README.md has no table of strategies")
	}
	table := readme[start:]
	table = table[:strings.Index(table, "\n\n")]
	documented := map[string]bool{}
	options := map[string]string{} // strategy: its options cell
	for _, row := range strings.Split(table, "\n")[2:] {
		cells := strings.Split(row, "|")
		for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = true
			options[m[1]] = cells[2]
		}
	}
	// The options of the strategies the table describes in full (the
	// others have a block of their own below it, see
	// TestReadmeBlocksComplete).
	for name, parser := range map[string][2]string{
		"balanced":           {"strategies/balanced.go", "UnmarshalCaddyfile"},
		"cheapest":           {"strategies/cheapest.go", "UnmarshalCaddyfile"},
		"lowest_latency":     {"strategies/measured.go", "unmarshalCaddyfile"},
		"highest_throughput": {"strategies/measured.go", "unmarshalCaddyfile"},
		"fallback":           {"strategies/fallback.go", "UnmarshalCaddyfile"},
		"random":             {"strategies/random.go", "UnmarshalCaddyfile"},
		"round_robin":        {"strategies/round_robin.go", "UnmarshalCaddyfile"},
		"weighted":           {"strategies/weighted.go", "UnmarshalCaddyfile"},
		"least_busy":         {"strategies/least_busy.go", "UnmarshalCaddyfile"},
		"best_quality":       {"strategies/best_quality.go", "UnmarshalCaddyfile"},
	} {
		_, labels := caseLabels(t, parser[0], parser[1])
		for _, o := range slices.Sorted(maps.Keys(labels)) {
			if !strings.Contains(options[name], "`"+o+"`") {
				t.Errorf("README.md's table of strategies does not list %s's option %s", name, o)
			}
		}
	}
	registered := map[string]bool{}
	for _, m := range caddy.GetModules(strategies.Namespace) {
		registered[m.ID.Name()] = true
		if !documented[m.ID.Name()] {
			t.Errorf("strategy %s is not in README.md's table", m.ID.Name())
		}
	}
	if len(registered) < 10 {
		t.Fatalf("found only %d strategies", len(registered))
	}
	for name := range documented {
		if !registered[name] {
			t.Errorf("README.md's table lists the strategy %s, which is not registered", name)
		}
	}
}

// TestReadmeAdminFields checks that every field of the admin API's
// answers (the admin* types of admin.go) is named in the README.
func TestReadmeAdminFields(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	f, err := parser.ParseFile(token.NewFileSet(), "admin.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || !strings.HasPrefix(ts.Name.Name, "admin") {
			return true
		}
		ast.Inspect(ts, func(n ast.Node) bool {
			if field, ok := n.(*ast.Field); ok && field.Tag != nil {
				tag, _ := strconv.Unquote(field.Tag.Value)
				name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
				if name != "" && name != "-" {
					tags[name] = true
				}
			}
			return true
		})
		return false
	})
	if len(tags) < 30 {
		t.Fatalf("found only %d fields in admin.go: %v", len(tags), tags)
	}
	for _, tag := range slices.Sorted(maps.Keys(tags)) {
		if !strings.Contains(readme, `"`+tag+`"`) && !strings.Contains(readme, "`"+tag+"`") {
			t.Errorf("the admin API answers with the field %q, which README.md does not name", tag)
		}
	}
}

// TestCaddyfileZeroRefused holds the README's promise on zero values: a
// 0 written in the Caddyfile where the JSON config would read it as the
// default (or as no limit) is refused, not silently taken for that.
func TestCaddyfileZeroRefused(t *testing.T) {
	for _, body := range []string{
		"max_body 0", "max_depth 0", "fail_threshold 0",
		"first_byte_timeout 0", "stream_idle_timeout 0", "read_body_timeout 0", "max_retry_wait 0",
		"cooldown 0", "probe_interval 0", "ramp 0",
		"provider p http://127.0.0.1:1 {\n\tdefault_max_tokens 0\n}",
		"provider p http://127.0.0.1:1 {\n\tmodels auto\n\tmodels_refresh 0\n}",
		"provider p http://127.0.0.1:1 {\n\tmodels auto\n\tmodels_timeout 0s\n}",
		"provider p http://127.0.0.1:1 {\n\trpm 0\n}",
		"state redis redis://127.0.0.1:1 {\n\ttimeout 0\n}",
		"state redis redis://127.0.0.1:1 {\n\tsync_interval 0s\n}",
		"model m p {\n\tbudget 0 day\n}",
		"route r m {\n\tstrategy consensus {\n\t\tvoters 0\n\t}\n}",
	} {
		if _, err := adaptSite(body); err == nil || !strings.Contains(err.Error(), "0 is not allowed") {
			t.Errorf("%q: got %v, want a refusal of the 0", body, err)
		}
	}
	for _, body := range []string{"records 0", "refresh 0"} {
		cfg := ":8080 {\n\tllm_route_dashboard {\n\t\t" + body + "\n\t}\n}\n"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil); err == nil || !strings.Contains(err.Error(), "0 is not allowed") {
			t.Errorf("llm_route_dashboard %q: got %v, want a refusal of the 0", body, err)
		}
	}
}

// TestReadmeModules checks that every Caddy module of llm_route (and of
// llm_mock) is named in the README.
func TestReadmeModules(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	n := 0
	for _, id := range caddy.Modules() {
		if !strings.Contains(id, "llm") || strings.Contains(id, "_test") { // (tests register modules of their own)
			continue
		}
		n++
		ns := caddy.ModuleID(id).Namespace()
		if !strings.Contains(readme, "`"+id+"`") && !(ns == strategies.Namespace && strings.Contains(readme, "`"+ns+".*`")) {
			t.Errorf("the module %s is not named in README.md", id)
		}
	}
	if n < 5 {
		t.Fatalf("found only %d llm modules", n)
	}
}
