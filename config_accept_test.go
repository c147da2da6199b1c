package llmroute

import "testing"

// TestConfigsAccepted: configs near the ones Validate refuses that must
// still load, so that a refusal catches the mistake and nothing more.
func TestConfigsAccepted(t *testing.T) {
	const prov = "provider a http://127.0.0.1:1\nmodel m a\n"
	for _, tc := range []struct{ name, body string }{
		{"max_retry_wait with a route's 429", prov + "retry_on 5xx\nmax_retry_wait 5s\nroute r m {\n\tretry_on 429\n}"},
		{"max_retry_wait with 4xx", prov + "retry_on 4xx 5xx\nmax_retry_wait 5s"},
		{"max_retry_wait with the default retry_on", prov + "max_retry_wait 5s"},
		{"retry_on a client error", prov + "retry_on 404 429 5xx"},
		{"weight with the weighted strategy", prov + "route r {\n\ttarget m {\n\t\tweight 2\n\t}\n\tstrategy weighted\n}"},
		{"weight a client may use by strategy_header", prov + "strategy_header X-Strategy\nroute r {\n\ttarget m {\n\t\tweight 2\n\t}\n}"},
		{"pattern with a discovering provider", "provider a http://127.0.0.1:1 {\n\tmodels auto\n\tmodels_timeout 1ms\n}\nmodel gpt-* {\n\tprice 1 2\n}"},
		{"slash name whose prefix is no provider", prov + "model meta-llama/llama-3 a"},
		{"slash name of a provider, not one of its models", prov + "model a/other a"},
		{"durations of a millisecond", prov + "cooldown 1ms\nprobe_interval 1ms\nramp 1ms"},
		{"URL path as base_path", "provider a http://127.0.0.1:1/v1/ {\n\tbase_path /v1\n}\nmodel m a"},
		{"unix socket upstream", "provider a unix//tmp/llm.sock\nmodel m a"},
		{"placeholder upstream", "provider a {env.LLM_UPSTREAM}\nmodel m a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := loadSite(t, tc.body); err != nil {
				t.Fatalf("refused: %v\n%s", err, tc.body)
			}
		})
	}
}
