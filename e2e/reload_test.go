package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// reloadSetup is one version of the configuration: the mocks answer with
// the version in their text, and the later versions add a model. The
// gateway logs every request it handles to accessLog.
func reloadSetup(version int, accessLog string) setup {
	text := fmt.Sprintf("Answer of configuration version %d.", version)
	s := setup{
		Site: fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}", accessLog),
		Mocks: []mockSite{
			{Port: portAlpha, Name: "alpha", Text: text},
			{Port: portBeta, Name: "beta", Text: text},
		},
		Route: fmt.Sprintf(`
		provider alpha http://127.0.0.1:%d
		provider beta http://127.0.0.1:%d
		model chat alpha beta
`, portAlpha, portBeta),
	}
	if version > 1 {
		s.Route += fmt.Sprintf("\t\tmodel fresh-%d beta\n", version)
	}
	return s
}

func loadConfig(t *testing.T, s setup) {
	t.Helper()
	status, body, err := postLoad(ctxT(t), newHTTPClient(t), s.caddyfile())
	if err != nil {
		t.Fatalf("POST /load: %v", err)
	}
	if status != http.StatusOK {
		t.Fatalf("POST /load: %d %s", status, body)
	}
}

// Reloading the configuration twice under steady traffic (keep-alive
// SDK clients, streams and not) loses no request, and the new
// configuration takes over.
//
// A reload has two races below any handler: Go's http.Server.Shutdown
// closes idle keep-alive connections, and a POST a client writes onto one
// at that instant fails in the client's transport (Go does not resend
// non-idempotent requests); and Caddy opens a new SO_REUSEPORT socket per
// configuration, so connections the kernel queued on the old one die with
// it. A request lost that way never reaches the gateway. The test resends
// a request only when the client got no HTTP response at all, and then
// proves with the access log that the lost attempt never reached the
// gateway; every request the gateway saw must have succeeded.
func TestReloadUnderTraffic(t *testing.T) {
	accessLog := filepath.Join(t.TempDir(), "access.log")
	start(t, reloadSetup(1, accessLog))
	c := oaClient(t)

	const total = 200
	type result struct {
		text string
		err  error
		lost []string // attempt ids that got no HTTP response
	}
	results := make([]result, total)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range total {
			r := &results[i]
			for try := 0; try < 3; try++ {
				attempt := fmt.Sprintf("%d.%d", i, try)
				id := oaoption.WithHeader("X-Test-Id", attempt)
				var resp *http.Response
				began := time.Now()
				if i%2 == 1 {
					s := chatStream(t, c, chatParams("chat", prompt), id)
					r.text, r.err, resp = s.Text, s.Err, s.Resp
					if s.Err == nil && s.Finish != "stop" {
						r.err = fmt.Errorf("stream finished with %q", s.Finish)
					}
				} else {
					cc, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), id, oaoption.WithResponseInto(&resp))
					r.text, r.err = "", err
					if err == nil {
						r.text = cc.Choices[0].Message.Content
					}
				}
				// a gateway that hangs must not pass for a lost connection
				if r.err == nil || resp != nil || time.Since(began) > time.Second {
					break
				}
				r.lost = append(r.lost, attempt)
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()

	time.Sleep(150 * time.Millisecond)
	loadConfig(t, reloadSetup(2, accessLog))
	time.Sleep(150 * time.Millisecond)
	loadConfig(t, reloadSetup(3, accessLog))
	wg.Wait()

	handled := map[string]int{} // attempt id -> status logged by the gateway
	for id, e := range readAccessLogBy(t, accessLog, "X-Test-Id") {
		handled[id] = e.Status
	}
	seen := map[string]int{}
	lost := 0
	for i, r := range results {
		for _, attempt := range r.lost {
			lost++
			if status, ok := handled[attempt]; ok {
				t.Errorf("request %s reached the gateway (status %d) but the client got no response", attempt, status)
			}
		}
		if r.err != nil {
			t.Errorf("request %d failed: %v", i, r.err)
			continue
		}
		seen[r.text]++
	}
	t.Logf("answers: %v; attempts lost before reaching the gateway: %d", seen, lost)
	if lost > 6 {
		t.Errorf("%d requests were lost in two reloads", lost)
	}
	for text := range seen {
		if !strings.HasPrefix(text, "Answer of configuration version ") {
			t.Errorf("unexpected answer %q", text)
		}
	}
	if seen["Answer of configuration version 1."] == 0 || seen["Answer of configuration version 3."] == 0 {
		t.Errorf("the traffic did not overlap the reloads: %v", seen)
	}
	if results[total-1].text != "Answer of configuration version 3." {
		t.Errorf("the last answer is %q, want version 3", results[total-1].text)
	}

	// the new model of version 3 works, the one of version 2 is gone
	resp, err := c.Chat.Completions.New(ctxT(t), chatParams("fresh-3", prompt))
	if err != nil || resp.Choices[0].Message.Content != "Answer of configuration version 3." {
		t.Errorf("new model after reload: %v", err)
	}
	_, err = c.Chat.Completions.New(ctxT(t), chatParams("fresh-2", prompt))
	var oerr *openai.Error
	if !asError(err, &oerr) || oerr.StatusCode != 404 {
		t.Errorf("model of the replaced config: %v, want 404", err)
	}
}

// Cooldowns are kept per provider identity and model, and outlive a reload.
func TestCooldownSurvivesReload(t *testing.T) {
	start(t, reloadSetup(1, filepath.Join(t.TempDir(), "access.log")))
	c := oaClient(t)
	var hr *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=429,retry_after=5"), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, hr.Header, "beta", 2)
	loadConfig(t, reloadSetup(2, filepath.Join(t.TempDir(), "access2.log")))
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, hr.Header, "beta", 1)
}

// Two sites that each define a provider called alpha, with different
// keys, are two accounts: a 429 with Retry-After on one site's alpha
// cools down that site's alpha only.
func TestSameProviderNameTwoSites(t *testing.T) {
	s := withDefaults("")
	s.Route = strings.Replace(s.Route, "provider alpha http://127.0.0.1:9181", "provider alpha http://127.0.0.1:9181 {\n\t\t\tapi_key {env.E2E_SITE_ONE_KEY}\n\t\t}", 1)
	s.Extra = fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	llm_route {
		first_byte_timeout 500ms
		fail_threshold 1000
		provider alpha http://127.0.0.1:%d {
			api_key {env.E2E_SITE_TWO_KEY}
		}
		provider beta http://127.0.0.1:%d
		model chat alpha beta {
			upstream_name mock-chat
		}
	}
}`, portExtra1, portAlpha, portBeta)
	start(t, s)
	one := oaClient(t)
	two := oaClient(t, oaoption.WithBaseURL(fmt.Sprintf("http://localhost:%d/v1/", portExtra1)))

	var hr *http.Response
	if _, err := one.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=429,retry_after=30"), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, hr.Header, "beta", 2)
	// Site one's alpha cools down: its next request goes to beta first.
	if _, err := one.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, hr.Header, "beta", 1)
	// Site two's alpha is another account: not cooling down.
	if _, err := two.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, hr.Header, "alpha", 1)
}
