package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestReadmeTryIt runs the README's "Try it" commands against
// Caddyfile.example, as a user does with the example running, and checks
// the output the README shows under each (`#   Header: value` lines and
// body lines, where … stands for anything); then the commands the
// example's comments suggest. The example's ports are the
// suite's: its gateway on 9080, its admin API on 2999, its mocks on the
// suite's mock ports.
func TestReadmeTryIt(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"localhost:2019", "localhost:2999", ":8080", ":9080",
		":9101", ":9181", ":9102", ":9182", ":9103", ":9183",
		"output file llm-decisions.log", "output discard",
	).Replace(string(example))
	unload(t)
	started = setup{}
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{LoadRequestTimeout: 30 * time.Second}).InitServer(cfg, "caddyfile")
	time.Sleep(30 * time.Millisecond) // (see start)
	t.Cleanup(func() { unload(t) })

	c := newHTTPClient(t)
	// The discovered model the model list shows is fetched once the
	// config has started: wait for it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp := do(t, c, http.MethodGet, adminURL+"/llm_route/", nil, 0)
		if bytes.Contains(resp.Body, []byte(`"mock-reasoner"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the smart provider's models were not discovered: %s", resp.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "## Try it")
	if !ok {
		t.Fatal("README.md has no Try it section")
	}
	_, block, _ = strings.Cut(block, "```sh\n")
	block, _, _ = strings.Cut(block, "\n```")

	lines := strings.Split(block, "\n")
	n := 0
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "curl ") {
			continue
		}
		cmd := lines[i]
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(lines[i])
		}
		var want []string
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "#   ") {
			i++
			want = append(want, strings.TrimPrefix(lines[i], "#   "))
		}
		n++
		runCurl(t, c, cmd, want)
	}
	if n < 15 {
		t.Fatalf("found only %d curl commands in README.md's Try it", n)
	}

	// Caddyfile.example's own "Try:" commands (a stream the backup
	// rescues, a hedged request) answer, and a stream ends well-formed.
	n = 0
	exLines := strings.Split(string(example), "\n")
	for i := 0; i < len(exLines); i++ {
		line := strings.TrimLeft(exLines[i], "\t")
		if !strings.HasPrefix(line, "#   curl ") {
			continue
		}
		cmd := strings.TrimPrefix(line, "#   ")
		for strings.HasSuffix(cmd, `\`) && i+1 < len(exLines) {
			i++
			cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(strings.TrimPrefix(strings.TrimLeft(exLines[i], "\t"), "#"))
		}
		n++
		runCurl(t, c, cmd, nil)
	}
	if n < 2 {
		t.Fatalf("found only %d curl commands in Caddyfile.example", n)
	}
}

// tryItHeader is an expected output line that shows a response header.
var tryItHeader = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*): (.*)$`)

// runCurl runs one curl command line of the README (the options it uses:
// -s, -i, -N, -X, -H, -d) and checks its response against want.
func runCurl(t *testing.T, c *http.Client, cmd string, want []string) {
	t.Helper()
	args := shellWords(t, cmd)
	method, url, body := "", "", ""
	var hdrs []string
	hasBody := false
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-X":
			i++
			method = args[i]
		case a == "-H":
			i++
			hdrs = append(hdrs, args[i])
		case a == "-d":
			i++
			body, hasBody = args[i], true
		case strings.HasPrefix(a, "-"):
			// -s, -i, -N: output only
		default:
			url = a
		}
	}
	if method == "" {
		method = http.MethodGet
		if hasBody {
			method = http.MethodPost
		}
	}
	url = "http://" + strings.NewReplacer("localhost:8080", "localhost:9080", "localhost:2019", "localhost:2999").Replace(url)
	req, err := http.NewRequestWithContext(ctxT(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d sends it
	}
	for _, h := range hdrs {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(name, strings.TrimSpace(value))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the body: %v", cmd, err)
	}
	if len(want) == 0 && resp.StatusCode >= 300 {
		t.Errorf("%s: status %d: %s", cmd, resp.StatusCode, got)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") && !bytes.HasSuffix(got, []byte("data: [DONE]\n\n")) {
		t.Errorf("%s: the stream did not end with [DONE]:\n%s", cmd, got)
	}
	for _, w := range want {
		if m := tryItHeader.FindStringSubmatch(w); m != nil && !strings.HasPrefix(w, "{") {
			if v := resp.Header.Get(m[1]); v != m[2] {
				t.Errorf("%s\n  README shows %s: %s, the gateway answered %q (status %d)", cmd, m[1], m[2], v, resp.StatusCode)
			}
			continue
		}
		pattern := "^" + strings.ReplaceAll(regexp.QuoteMeta(w), "…", ".*")
		if !regexp.MustCompile(pattern).Match(bytes.TrimSpace(got)) {
			t.Errorf("%s\n  README shows the body %s\n  the gateway answered %s", cmd, w, got)
		}
	}
}

// shellWords splits a command line as the shell does for the README's
// commands: words separated by spaces, single-quoted strings kept whole.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in %s", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
