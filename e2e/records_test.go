package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	oaoption "github.com/openai/openai-go/v3/option"
)

// recordsProviderKey is the provider key of the records tests: it must
// appear in no record.
const recordsProviderKey = "sk-provider-9f8e7d6c5b4a"

// recordsSetup routes `chat` (alpha then beta, priced) and `limited`
// (alpha, one request a minute, then only-beta through the route
// `spill`), with client keys, the decision log written to logFile, and
// feedback at /v1/feedback.
func recordsSetup(t *testing.T, logFile, extraRoute string) setup {
	t.Setenv("LLMROUTE_RECORDS_CLIENT", clientKey)
	t.Setenv("LLMROUTE_RECORDS_PROVIDER", recordsProviderKey)
	return setup{
		Global: fmt.Sprintf("\tlog {\n\t\tlevel ERROR\n\t}\n\tlog decisions {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude http.handlers.llm_route.decisions\n\t}", logFile),
		Route: `
		decision_log {
			prompt_bytes 200
		}
		feedback_path /v1/feedback
		key team {
			secret {env.LLMROUTE_RECORDS_CLIENT}
		}
		provider alpha http://127.0.0.1:9181 {
			api_key {env.LLMROUTE_RECORDS_PROVIDER}
		}
		provider beta http://127.0.0.1:9182 {
			api_key {env.LLMROUTE_RECORDS_PROVIDER}
		}
		model chat alpha beta {
			upstream_name mock-chat
			price 2 8
		}
		model limited alpha {
			upstream_name mock-limited
			price 1 1
			rpm 1
		}
		model only-beta beta {
			price 1 2
		}
		route spill {
			models limited only-beta
			on_exhausted next
		}
` + extraRoute,
		Mocks: defaultMocks(),
	}
}

// decisionLog reads the JSON lines of the decision log, waiting until
// one has request_id id and message msg (the record is written when the
// handler returns, which may be just after the client read its answer).
func decisionLog(t *testing.T, path, msg, id string) (all []map[string]any, match map[string]any) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		all = readJSONLines(t, path)
		n := 0
		for _, e := range all {
			if e["msg"] == msg && e["request_id"] == id {
				match = e
				n++
			}
		}
		if n > 1 {
			t.Fatalf("%d %s records of request %s, want 1", n, msg, id)
		}
		if match != nil {
			return all, match
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s record of request %s in the decision log; it holds %d lines", msg, id, len(all))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a line being written
		}
		out = append(out, e)
	}
	return out
}

// One request that falls back leaves one record: its id is the
// response's X-LLM-Request-Id, and it says which route, strategy and
// candidates were considered, each attempt and its cause, what answered,
// the times, the tokens and the cost; no key appears in it.
func TestDecisionRecord(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	start(t, recordsSetup(t, logFile, ""))
	c := oaClient(t)
	prompt := "Please tell me about the weather in Lisbon today"
	var resp *http.Response
	answer, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt),
		faultHeader("alpha:status,code=503"), oaoption.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-LLM-Request-Id")
	if len(id) != 36 {
		t.Fatalf("X-LLM-Request-Id %q is not Caddy's request UUID", id)
	}
	all, rec := decisionLog(t, logFile, "decision", id)
	if len(all) != 1 {
		t.Errorf("%d lines in the decision log after one request, want 1", len(all))
	}
	if len(rec) == 0 {
		t.Fatal("empty record")
	}
	if rec["logger"] != "http.handlers.llm_route.decisions" {
		t.Errorf("logger %v", rec["logger"])
	}
	str := func(k string) string { s, _ := rec[k].(string); return s }
	num := func(k string) float64 { f, _ := rec[k].(float64); return f }
	for k, want := range map[string]string{"route": "chat", "requested": "chat", "model": "chat", "provider": "beta",
		"reason": "direct", "key": "team", "endpoint": "/chat/completions", "prompt": prompt} {
		if got := str(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if num("status") != 200 || num("calls") != 2 {
		t.Errorf("status %v calls %v, want 200 and 2", rec["status"], rec["calls"])
	}
	attempts, _ := json.Marshal(rec["attempts"])
	var atts []struct {
		Model, Provider, Cause string
		Status                 int
		UpstreamMs             float64 `json:"upstream_ms"`
		TTFTMs                 float64 `json:"ttft_ms"`
	}
	if err := json.Unmarshal(attempts, &atts); err != nil {
		t.Fatal(err)
	}
	if len(atts) != 2 || atts[0].Provider != "alpha" || atts[0].Cause != "5xx" || atts[0].Status != 503 ||
		atts[1].Provider != "beta" || atts[1].Cause != "ok" || atts[1].TTFTMs <= 0 || atts[1].UpstreamMs < atts[1].TTFTMs {
		t.Errorf("attempts %s", attempts)
	}
	cands, _ := json.Marshal(rec["candidates"])
	if string(cands) != `[{"model":"chat","provider":"alpha"},{"model":"chat","provider":"beta"}]` {
		t.Errorf("candidates %s", cands)
	}
	in, out := answer.Usage.PromptTokens, answer.Usage.CompletionTokens
	if in == 0 || out == 0 || num("input_tokens") != float64(in) || num("output_tokens") != float64(out) {
		t.Errorf("tokens %v/%v, the answer's usage %d/%d", rec["input_tokens"], rec["output_tokens"], in, out)
	}
	if want := (float64(in)*2 + float64(out)*8) / 1e6; math.Abs(num("cost_usd")-want) > 1e-12 {
		t.Errorf("cost_usd %v, want %v", rec["cost_usd"], want)
	}
	feats, _ := rec["features"].(map[string]any)
	if feats["prompt_tokens"] == nil || feats["stream"] != false {
		t.Errorf("features %v", feats)
	}
	d, ttft, up, over := num("duration_ms"), num("ttft_ms"), num("upstream_ms"), num("overhead_ms")
	if !(d > 0 && ttft > 0 && ttft <= d && up > 0 && up <= d && over >= 0 && over <= d) {
		t.Errorf("times: duration %v ttft %v upstream %v overhead %v", d, ttft, up, over)
	}
	if _, ok := rec["decision_ms"].(float64); !ok {
		t.Errorf("no decision_ms")
	}
	b, _ := os.ReadFile(logFile)
	for _, secret := range []string{clientKey, recordsProviderKey} {
		if strings.Contains(string(b), secret) {
			t.Errorf("a key is in the decision log: %s", b)
		}
	}

	// A stream: its usage, its time to first token, stream among the
	// features.
	sp := chatParams("chat", prompt)
	sr := chatStream(t, c, sp)
	if sr.Err != nil {
		t.Fatal(sr.Err)
	}
	_, srec := decisionLog(t, logFile, "decision", sr.Resp.Header.Get("X-LLM-Request-Id"))
	sfeats, _ := srec["features"].(map[string]any)
	satts, _ := srec["attempts"].([]any)
	sfirst, _ := satts[0].(map[string]any)
	if sfeats["stream"] != true || srec["provider"] != "alpha" || srec["output_tokens"] != float64(len(strings.Fields(alphaText))) ||
		srec["ttft_ms"] == nil || sfirst["ttft_ms"] == nil || sfirst["cause"] != "ok" {
		t.Errorf("record of a stream: %v", srec)
	}

	// A request refused before routing has a record and an id too.
	hc := newHTTPClient(t)
	res := post(t, hc, "/v1/chat/completions", []byte(`{"model":"chat","messages":[`), "Authorization", "Bearer "+clientKey)
	if res.Status != 400 || len(res.Header.Get("X-LLM-Request-Id")) != 36 {
		t.Fatalf("bad body: %d, id %q", res.Status, res.Header.Get("X-LLM-Request-Id"))
	}
	_, bad := decisionLog(t, logFile, "decision", res.Header.Get("X-LLM-Request-Id"))
	if bad["status"] != float64(400) || bad["route"] != nil {
		t.Errorf("record of a bad request: %v", bad)
	}
}

// Feedback on an answer is taken with the client's key, validated, and
// logged where it joins the answer's record by request id.
func TestFeedbackJoinsRecord(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	start(t, recordsSetup(t, logFile, ""))
	c := oaClient(t)
	var resp *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", "What is two plus two?"), oaoption.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-LLM-Request-Id")
	hc := newHTTPClient(t)
	auth := []string{"Authorization", "Bearer " + clientKey}
	fb := fmt.Sprintf(`{"request_id":%q,"score":4,"comment":"right, a bit terse"}`, id)

	for _, tc := range []struct {
		name    string
		body    string
		headers []string
		status  int
		code    string
	}{
		{"no key", fb, nil, 401, "missing_api_key"},
		{"wrong key", fb, []string{"Authorization", "Bearer sk-wrong"}, 401, "invalid_api_key"},
		{"not JSON", `{"request_id":`, auth, 400, "invalid_feedback"},
		{"no score", fmt.Sprintf(`{"request_id":%q}`, id), auth, 400, "invalid_feedback"},
		{"score out of range", fmt.Sprintf(`{"request_id":%q,"score":7}`, id), auth, 400, "invalid_feedback"},
		{"unknown field", fmt.Sprintf(`{"request_id":%q,"score":1,"prompt":"x"}`, id), auth, 400, "invalid_feedback"},
		{"duplicate field", fmt.Sprintf(`{"request_id":%q,"score":1,"score":0}`, id), auth, 400, "invalid_feedback"},
		{"no id", `{"score":1}`, auth, 400, "invalid_feedback"},
	} {
		res := post(t, hc, "/v1/feedback", []byte(tc.body), tc.headers...)
		if res.Status != tc.status || res.json("error.code") != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, res.Status, res.Body, tc.status, tc.code)
		}
	}
	if res := do(t, hc, http.MethodGet, gatewayURL+"/v1/feedback", nil, 0, auth...); res.Status != 405 {
		t.Errorf("GET feedback: %d", res.Status)
	}

	res := post(t, hc, "/v1/feedback", []byte(fb), auth...)
	if res.Status != 202 || res.json("request_id") != id || res.json("score") != "0.75" {
		t.Fatalf("feedback: %d %s", res.Status, res.Body)
	}
	all, got := decisionLog(t, logFile, "feedback", id)
	if got["score"] != float64(4) || got["score_norm"] != 0.75 || got["comment"] != "right, a bit terse" || got["key"] != "team" {
		t.Errorf("feedback record %v", got)
	}
	// The join the README describes: the decision of the same request id
	// gives the model (and, with prompt_bytes, the prompt) to train on.
	joined := joinFeedback(all)
	if len(joined) != 1 || joined[0].ID != id || joined[0].Model != "chat" || joined[0].Prompt != "What is two plus two?" ||
		joined[0].Score != 0.75 || joined[0].Cost <= 0 {
		t.Errorf("joined %+v", joined)
	}
	b, _ := os.ReadFile(logFile)
	if strings.Contains(string(b), clientKey) {
		t.Errorf("the client key is in the decision log")
	}

	// The README's jq command makes the same join.
	if _, err := exec.LookPath("jq"); err != nil {
		t.Log("jq is not installed: the README's join command is not checked")
		return
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, program, ok := strings.Cut(string(readme), "jq -c -n '")
	program, _, ok2 := strings.Cut(program, "' llm-decisions.log")
	if !ok || !ok2 {
		t.Fatal("the README has no jq join command")
	}
	out, err := exec.Command("jq", "-c", "-n", program, logFile).Output()
	if err != nil {
		t.Fatalf("the README's jq command: %v", err)
	}
	var fromJQ trainRow
	if err := json.Unmarshal(out, &fromJQ); err != nil || fromJQ != joined[0] {
		t.Errorf("the README's jq command gives %s (%v), want %+v", out, err, joined[0])
	}
}

// trainRow is one line of train's input (a feedback record).
type trainRow struct {
	ID     string  `json:"id"`
	Prompt string  `json:"prompt"`
	Model  string  `json:"model"`
	Score  float64 `json:"score"`
	Cost   float64 `json:"cost"`
}

// joinFeedback joins feedback records to decision records by request id,
// as the README's jq command does.
func joinFeedback(lines []map[string]any) []trainRow {
	decisions := map[any]map[string]any{}
	for _, e := range lines {
		if e["msg"] == "decision" {
			decisions[e["request_id"]] = e
		}
	}
	var out []trainRow
	for _, e := range lines {
		d := decisions[e["request_id"]]
		if e["msg"] != "feedback" || d == nil || e["key"] != d["key"] {
			continue // (only the requesting key's own ratings)
		}
		id, _ := e["request_id"].(string)
		p, _ := d["prompt"].(string)
		m, _ := d["model"].(string)
		s, _ := e["score_norm"].(float64)
		c, _ := d["cost_usd"].(float64)
		out = append(out, trainRow{id, p, m, s, c})
	}
	return out
}

// metricsNow scrapes the admin API's /metrics: llm_route's series by
// name{labels}, labels sorted by name as the exposition writes them.
func metricsNow(t *testing.T) map[string]float64 {
	t.Helper()
	res := do(t, newHTTPClient(t), http.MethodGet, adminURL+"/metrics", nil, 0)
	if res.Status != 200 {
		t.Fatalf("/metrics: %d %s", res.Status, res.Body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(res.Body), "\n") {
		if !strings.HasPrefix(line, "llm_route_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// series names one series: labels given as name, value pairs.
func series(name string, labels ...string) string {
	type kv struct{ k, v string }
	var pairs []kv
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, kv{labels[i], labels[i+1]})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].k < pairs[j].k })
	var b strings.Builder
	b.WriteString(name + "{")
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.k + "=" + strconv.Quote(p.v))
	}
	return b.String() + "}"
}

// The metrics follow a scripted sequence: a fallback on a 503, a quota
// skip, a 429 that starts a cooldown and a request that passes the
// cooling pair; counts, tokens, cost, histograms and gauges move by what
// the answers reported.
func TestMetricsSequence(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	start(t, recordsSetup(t, logFile, ""))
	before := metricsNow(t)
	c := oaClient(t)

	// 1. chat: alpha answers 503, beta answers.
	a1, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=503"))
	if err != nil {
		t.Fatal(err)
	}
	// 2, 3. spill: limited (rpm 1) answers once, then is skipped for
	// its quota and only-beta answers.
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("spill", prompt)); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("spill", prompt), oaoption.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, resp.Header, "beta", 1)
	// 4. chat: alpha answers 429 with Retry-After 60 (a cooldown at
	// once), beta answers; 5. chat again: alpha is cooling, beta answers.
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=429,retry_after=60")); err != nil {
		t.Fatal(err)
	}
	a5, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	expectAttempts(t, resp.Header, "beta", 1)
	// The records are counted when each handler returns: wait for the
	// last one's record.
	decisionLog(t, logFile, "decision", resp.Header.Get("X-LLM-Request-Id"))

	after := metricsNow(t)
	delta := func(s string) float64 { return after[s] - before[s] }
	in := float64(a1.Usage.PromptTokens + 2*a5.Usage.PromptTokens)
	out := float64(a1.Usage.CompletionTokens + 2*a5.Usage.CompletionTokens)
	for _, w := range []struct {
		series string
		want   float64
	}{
		{series("llm_route_requests_total", "route", "chat", "model", "chat", "provider", "beta", "status", "200"), 3},
		{series("llm_route_requests_total", "route", "spill", "model", "limited", "provider", "alpha", "status", "200"), 1},
		{series("llm_route_requests_total", "route", "spill", "model", "only-beta", "provider", "beta", "status", "200"), 1},
		{series("llm_route_attempts_total", "model", "chat", "provider", "alpha", "cause", "5xx"), 1},
		{series("llm_route_attempts_total", "model", "chat", "provider", "alpha", "cause", "429"), 1},
		{series("llm_route_attempts_total", "model", "chat", "provider", "beta", "cause", "ok"), 3},
		{series("llm_route_fallbacks_total", "model", "chat", "provider", "alpha", "cause", "5xx"), 1},
		{series("llm_route_fallbacks_total", "model", "chat", "provider", "alpha", "cause", "429"), 1},
		{series("llm_route_fallbacks_total", "model", "chat", "provider", "alpha", "cause", "cooldown"), 1},
		{series("llm_route_fallbacks_total", "model", "limited", "provider", "alpha", "cause", "quota"), 1},
		{series("llm_route_tokens_total", "route", "chat", "model", "chat", "provider", "beta", "direction", "input"), in},
		{series("llm_route_tokens_total", "route", "chat", "model", "chat", "provider", "beta", "direction", "output"), out},
		{series("llm_route_upstream_ttft_seconds_count", "model", "chat", "provider", "beta"), 3},
		{series("llm_route_upstream_seconds_count", "model", "chat", "provider", "alpha"), 2},
		{series("llm_route_overhead_seconds_count", "route", "chat"), 3},
		{series("llm_route_decision_seconds_count", "route", "spill"), 2},
	} {
		if got := delta(w.series); got != w.want {
			t.Errorf("%s moved by %v, want %v", w.series, got, w.want)
		}
	}
	costSeries := series("llm_route_cost_usd_total", "route", "chat", "model", "chat", "provider", "beta")
	if got, want := delta(costSeries), (in*2+out*8)/1e6; math.Abs(got-want) > 1e-12 {
		t.Errorf("%s moved by %v, want %v", costSeries, got, want)
	}
	if v := after[series("llm_route_quota_remaining", "subject", "model:limited", "limit", "rpm")]; v > 0.5 {
		t.Errorf("quota remaining of model:limited rpm %v, want about 0", v)
	}
	if v := after[series("llm_route_cooldown_remaining_seconds", "provider", "alpha", "model", "mock-chat")]; v < 30 || v > 60 {
		t.Errorf("cooldown of alpha/mock-chat %v s, want about 60", v)
	}
	if v, ok := after[series("llm_route_cooldown_remaining_seconds", "provider", "beta", "model", "mock-chat")]; !ok || v != 0 {
		t.Errorf("cooldown of beta/mock-chat %v (reported %v), want 0", v, ok)
	}
	// No request id, key or prompt in any label.
	for s := range after {
		for _, bad := range []string{resp.Header.Get("X-LLM-Request-Id"), clientKey, recordsProviderKey, prompt} {
			if strings.Contains(s, bad) {
				t.Errorf("series %s holds %q", s, bad)
			}
		}
	}

	// A reload keeps the metrics (no duplicate registration), and they
	// go on counting.
	restart(t)
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("only-beta", prompt), oaoption.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	decisionLog(t, logFile, "decision", resp.Header.Get("X-LLM-Request-Id"))
	again := metricsNow(t)
	s := series("llm_route_requests_total", "route", "chat", "model", "chat", "provider", "beta", "status", "200")
	if again[s] != after[s] {
		t.Errorf("%s went from %v to %v over a reload", s, after[s], again[s])
	}
	s = series("llm_route_requests_total", "route", "only-beta", "model", "only-beta", "provider", "beta", "status", "200")
	if again[s]-after[s] != 1 {
		t.Errorf("%s moved by %v after the reload, want 1", s, again[s]-after[s])
	}
}

// Config reloads register llm_route's metrics into each new registry
// without a duplicate-registration error, and leave no growth behind:
// the same series, and about as many goroutines as before.
func TestMetricsAcrossReloads(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	start(t, recordsSetup(t, logFile, ""))
	c := oaClient(t)
	ask := func() {
		t.Helper()
		var resp *http.Response
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		decisionLog(t, logFile, "decision", resp.Header.Get("X-LLM-Request-Id"))
	}
	ask()
	first := metricsNow(t)
	goroutines := goruntime.NumGoroutine()
	const reloads = 30
	for range reloads {
		restart(t)
		ask()
	}
	last := metricsNow(t)
	s := series("llm_route_requests_total", "route", "chat", "model", "chat", "provider", "alpha", "status", "200")
	if last[s]-first[s] != reloads {
		t.Errorf("%s moved by %v over %d reloads with a request each", s, last[s]-first[s], reloads)
	}
	for k := range last {
		if _, ok := first[k]; !ok {
			t.Errorf("new series after reloads: %s", k)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for goruntime.NumGoroutine() > goroutines+20 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after %d reloads, %d before", goruntime.NumGoroutine(), reloads, goroutines)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
