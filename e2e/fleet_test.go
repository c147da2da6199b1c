package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
)

// A counter lives across a config reload through the admin API.
func TestQuotaSurvivesReload(t *testing.T) {
	s := withDefaults(`
		model counted alpha {
			upstream_name mock-chat
			daily_requests 2
		}
`)
	start(t, s)
	c := oaClient(t)
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("counted", prompt)); err != nil {
		t.Fatal(err)
	}
	loadConfig(t, s)
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("counted", prompt)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Chat.Completions.New(ctxT(t), chatParams("counted", prompt))
	var oerr *openai.Error
	if !asError(err, &oerr) || oerr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third request of two a day, across a reload: %v, want 429", err)
	}
}

// With state in Redis and Redis gone, on_error decides: allow keeps
// serving (under the limits kept in this process meanwhile), deny
// answers 429 at once. Nothing hangs either way.
func TestRedisDown(t *testing.T) {
	for _, policy := range []string{"allow", "deny"} {
		t.Run(policy, func(t *testing.T) {
			srv := redistest.Start(t)
			start(t, withDefaults(fmt.Sprintf(`
		state redis %s {
			on_error %s
			timeout 200ms
		}
		model counted alpha {
			upstream_name mock-chat
			daily_requests 100
		}
`, srv.URL(), policy)))
			c := oaClient(t)
			if _, err := c.Chat.Completions.New(ctxT(t), chatParams("counted", prompt)); err != nil {
				t.Fatalf("with Redis up: %v", err)
			}
			srv.Kill()
			for i := range 3 {
				_, err := c.Chat.Completions.New(ctxT(t), chatParams("counted", prompt))
				var oerr *openai.Error
				switch {
				case policy == "allow" && err != nil:
					t.Errorf("request %d with Redis down, on_error allow: %v", i+1, err)
				case policy == "deny" && (!asError(err, &oerr) || oerr.StatusCode != http.StatusTooManyRequests):
					t.Errorf("request %d with Redis down, on_error deny: %v, want 429", i+1, err)
				}
			}
			// A model without limits does not depend on Redis.
			if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt)); err != nil {
				t.Errorf("an unlimited model with Redis down: %v", err)
			}
		})
	}
}

// Two Caddy instances sharing one Redis enforce one limit and one
// budget together.
func TestFleetSharesLimits(t *testing.T) {
	srv := redistest.Start(t)
	bin := caddyBinary(t)
	mockPort := freePort(t)
	const text = "one two three four five six seven eight"
	gateways := make([]string, 2)
	for i := range gateways {
		gw := freePort(t)
		gateways[i] = fmt.Sprintf("http://127.0.0.1:%d/v1/", gw)
		mock := ""
		if i == 0 {
			mock = fmt.Sprintf("http://127.0.0.1:%d {\n\tllm_mock {\n\t\tname shared\n\t\ttext %s\n\t}\n}\n", mockPort, text)
		}
		runCaddy(t, bin, fmt.Sprintf(`{
	admin off
	auto_https off
	skip_install_trust
	log {
		level ERROR
	}
}
http://127.0.0.1:%d {
	llm_route {
		state redis %s
		provider shared http://127.0.0.1:%d
		model limited shared {
			upstream_name mock-limited
			daily_requests 5
		}
		model paid shared {
			upstream_name mock-paid
			price 0 1000
			budget 0.05 day
		}
	}
}
%s`, gw, srv.URL(), mockPort, mock))
	}
	clients := []openai.Client{
		oaClient(t, oaoption.WithBaseURL(gateways[0])),
		oaClient(t, oaoption.WithBaseURL(gateways[1])),
	}

	count := func(model string, maxTokens int64, n int) (ok, limited int) {
		t.Helper()
		for i := range n {
			p := chatParams(model, prompt)
			if maxTokens > 0 {
				p.MaxTokens = openai.Int(maxTokens)
			}
			_, err := clients[i%2].Chat.Completions.New(ctxT(t), p)
			var oerr *openai.Error
			switch {
			case err == nil:
				ok++
			case asError(err, &oerr) && oerr.StatusCode == http.StatusTooManyRequests:
				limited++
			default:
				t.Fatalf("%s request %d: %v", model, i+1, err)
			}
		}
		return ok, limited
	}
	if ok, limited := count("limited", 0, 12); ok != 5 || limited != 7 {
		t.Errorf("daily_requests 5 over two gateways: %d answered, %d refused; want 5 and 7", ok, limited)
	}

	// Each request reserves 20 output tokens at $1000 per million ($0.02)
	// and settles on the 8 the mock sends ($0.008).
	want, spent := 0, 0.0
	for range 12 {
		if spent+0.02 <= 0.05+1e-9 {
			spent += 0.008
			want++
		}
	}
	if ok, _ := count("paid", 20, 12); ok != want {
		t.Errorf("a daily budget of $0.05 over two gateways admitted %d requests, want %d", ok, want)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// caddyBinary builds ./cmd/caddy once for the tests that run Caddy as
// separate processes.
func caddyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llmroute-e2e-caddy")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/caddy")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// runCaddy runs the binary with a Caddyfile until the test ends, and
// waits until every site it declares answers.
func runCaddy(t *testing.T, bin, caddyfile string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("caddy output:\n%s", out.String())
		}
	})
	for _, line := range strings.Split(caddyfile, "\n") {
		host, ok := strings.CutPrefix(line, "http://")
		if !ok {
			continue
		}
		addr := strings.TrimSpace(strings.TrimSuffix(host, "{"))
		deadline := time.Now().Add(60 * time.Second)
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-done:
				t.Fatalf("caddy exited:\n%s", out.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("caddy did not listen on %s:\n%s", addr, out.String())
			}
		}
	}
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
