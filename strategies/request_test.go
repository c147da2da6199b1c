package strategies

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/caddy-llm-route/llmroute/tokens"
)

func TestBuildRequest(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		body     string
		system   string
		lastUser string
		conv     string
		tools    bool
		images   bool
		json     bool
	}{
		{
			name:     "chat simple",
			endpoint: "/chat/completions",
			body:     `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}]}`,
			system:   "Be brief.",
			lastUser: "Hello there",
			conv:     "Be brief.\nHello there",
		},
		{
			name:     "chat multi-turn with tool message",
			endpoint: "/chat/completions",
			body: `{"messages":[{"role":"system","content":"sys"},{"role":"user","content":"a"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},
				{"role":"tool","tool_call_id":"1","content":"c"},{"role":"assistant","content":"b"},{"role":"user","content":"d"}]}`,
			system:   "sys",
			lastUser: "d",
			conv:     "sys\na\nc\nb\nd",
		},
		{
			name:     "chat last user is not last message",
			endpoint: "/chat/completions",
			body:     `{"messages":[{"role":"user","content":"question"},{"role":"assistant","content":"answer"}]}`,
			lastUser: "question",
			conv:     "question\nanswer",
		},
		{
			name:     "chat content parts, image, audio",
			endpoint: "/chat/completions",
			body: `{"messages":[{"role":"developer","content":[{"type":"text","text":"dev"}]},{"role":"user","content":[
				{"type":"text","text":"describe"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},
				{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},{"type":"text","text":"this"}]}]}`,
			system:   "dev",
			lastUser: "describe\nthis",
			conv:     "dev\ndescribe\nthis",
			images:   true,
		},
		{
			name:     "chat image-only last user turn",
			endpoint: "/chat/completions",
			body: `{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"ok"},
				{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`,
			lastUser: "",
			conv:     "first\nok",
			images:   true,
		},
		{
			name:     "chat split system messages",
			endpoint: "/chat/completions",
			body:     `{"messages":[{"role":"system","content":"s1"},{"role":"user","content":"u"},{"role":"system","content":"s2"}]}`,
			system:   "s1\ns2",
			lastUser: "u",
			conv:     "s1\nu\ns2",
		},
		{
			name:     "chat escapes and unicode",
			endpoint: "/chat/completions",
			body:     `{"messages":[{"role":"user","content":"line1\nline2 \"q\" \u4f60\u597d 世界"}]}`,
			lastUser: "line1\nline2 \"q\" 你好 世界",
			conv:     "line1\nline2 \"q\" 你好 世界",
		},
		{
			name:     "chat tools and json_object",
			endpoint: "/chat/completions",
			body: `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],
				"response_format":{"type":"json_object"}}`,
			lastUser: "x",
			conv:     "x",
			tools:    true,
			json:     true,
		},
		{
			name:     "chat legacy functions and json_schema",
			endpoint: "/chat/completions",
			body: `{"messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}],
				"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{}}}}`,
			lastUser: "x",
			conv:     "x",
			tools:    true,
			json:     true,
		},
		{
			name:     "chat empty tools, text format",
			endpoint: "/chat/completions",
			body:     `{"messages":[{"role":"user","content":"x"}],"tools":[],"response_format":{"type":"text"}}`,
			lastUser: "x",
			conv:     "x",
		},
		{
			name:     "completions string",
			endpoint: "/completions",
			body:     `{"model":"m","prompt":"Once upon a time"}`,
			lastUser: "Once upon a time",
			conv:     "Once upon a time",
		},
		{
			name:     "completions array",
			endpoint: "/completions",
			body:     `{"model":"m","prompt":["one","two"]}`,
			lastUser: "one\ntwo",
			conv:     "one\ntwo",
		},
		{
			name:     "embeddings string",
			endpoint: "/embeddings",
			body:     `{"model":"e","input":"embed me"}`,
			lastUser: "embed me",
			conv:     "embed me",
		},
		{
			name:     "embeddings array",
			endpoint: "/embeddings",
			body:     `{"model":"e","input":["a","b"]}`,
			lastUser: "a\nb",
			conv:     "a\nb",
		},
		{
			name:     "responses string input",
			endpoint: "/responses",
			body:     `{"model":"m","instructions":"Talk like a pirate.","input":"Are semicolons optional?"}`,
			system:   "Talk like a pirate.",
			lastUser: "Are semicolons optional?",
			conv:     "Talk like a pirate.\nAre semicolons optional?",
		},
		{
			name:     "responses items",
			endpoint: "/responses",
			body: `{"model":"m","input":[{"role":"developer","content":"dev"},
				{"role":"user","content":[{"type":"input_text","text":"what is"},{"type":"input_image","image_url":"https://x/y.png"}]},
				{"type":"message","role":"assistant","content":[{"type":"output_text","text":"a cat"}]},
				{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
				{"type":"function_call_output","call_id":"c1","output":"result"},
				{"type":"reasoning","summary":[]},
				{"role":"user","content":"and this?"}],
				"tools":[{"type":"web_search"}],"text":{"format":{"type":"json_schema","name":"x","schema":{}}}}`,
			system:   "dev",
			lastUser: "and this?",
			conv:     "dev\nwhat is\na cat\nresult\nand this?",
			tools:    true,
			images:   true,
			json:     true,
		},
		{
			name:     "responses text format text",
			endpoint: "/responses",
			body:     `{"input":"x","text":{"format":{"type":"text"}}}`,
			lastUser: "x",
			conv:     "x",
		},
		{
			name:     "messages system string",
			endpoint: "/messages",
			body:     `{"model":"claude","max_tokens":10,"system":"You are terse.","messages":[{"role":"user","content":"Hi"}]}`,
			system:   "You are terse.",
			lastUser: "Hi",
			conv:     "You are terse.\nHi",
		},
		{
			name:     "messages blocks, image, tool use and result",
			endpoint: "/messages",
			body: `{"system":[{"type":"text","text":"s1"},{"type":"text","text":"s2","cache_control":{"type":"ephemeral"}}],
				"messages":[
				{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"text","text":"what is this"}]},
				{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"let me look"},{"type":"tool_use","id":"t1","name":"look","input":{"q":"cat"}}]},
				{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"a cat"}]}]}],
				"tools":[{"name":"look","input_schema":{"type":"object"}}]}`,
			system:   "s1\ns2",
			lastUser: "what is this",
			conv:     "s1\ns2\nwhat is this\nhmm\nlet me look\na cat",
			tools:    true,
			images:   true,
		},
		{
			name:     "messages tool_result with string content, then text",
			endpoint: "/messages",
			body: `{"messages":[{"role":"user","content":"q"},
				{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"out"},{"type":"text","text":"now answer"}]}]}`,
			lastUser: "now answer",
			conv:     "q\nout\nnow answer",
		},
		{
			name:     "messages output_format",
			endpoint: "/messages",
			body:     `{"messages":[{"role":"user","content":"x"}],"output_format":{"type":"json_schema","schema":{}}}`,
			lastUser: "x",
			conv:     "x",
			json:     true,
		},
		{
			name:     "messages output_config",
			endpoint: "/messages",
			body:     `{"messages":[{"role":"user","content":"x"}],"output_config":{"format":{"type":"json_schema","schema":{}}}}`,
			lastUser: "x",
			conv:     "x",
			json:     true,
		},
		{
			name:     "no text",
			endpoint: "/chat/completions",
			body:     `{"model":"m"}`,
		},
		{
			name:     "not an object",
			endpoint: "/chat/completions",
			body:     `[1,2]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if !json.Valid(body) {
				t.Fatalf("test body is not valid JSON")
			}
			req := BuildRequest(tt.endpoint, body)
			if req.Endpoint != tt.endpoint || string(req.Body) != tt.body {
				t.Errorf("Endpoint/Body not set")
			}
			if req.System != tt.system {
				t.Errorf("System = %q, want %q", req.System, tt.system)
			}
			if req.LastUser != tt.lastUser {
				t.Errorf("LastUser = %q, want %q", req.LastUser, tt.lastUser)
			}
			if req.Conversation != tt.conv {
				t.Errorf("Conversation = %q, want %q", req.Conversation, tt.conv)
			}
			if req.HasTools != tt.tools || req.HasImages != tt.images || req.JSONMode != tt.json {
				t.Errorf("HasTools, HasImages, JSONMode = %v, %v, %v; want %v, %v, %v",
					req.HasTools, req.HasImages, req.JSONMode, tt.tools, tt.images, tt.json)
			}
			if tt.conv != "" && req.PromptTokens < tokens.Estimate(tt.conv) {
				t.Errorf("PromptTokens = %d, want at least %d", req.PromptTokens, tokens.Estimate(tt.conv))
			}
			if tt.conv != "" && req.PromptTokens <= 0 {
				t.Errorf("PromptTokens = %d, want > 0", req.PromptTokens)
			}
			if req.Model != "" || req.Stream || req.MaxTokens != 0 || req.Header != nil {
				t.Errorf("BuildRequest set fields the caller owns")
			}
		})
	}
}

func TestBuildRequestTokens(t *testing.T) {
	plain := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hello world"}]}`))
	withTools := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hello world"}],
		"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather for a city","parameters":{"type":"object"}}}]}`))
	if withTools.PromptTokens <= plain.PromptTokens {
		t.Errorf("tools add no tokens: %d vs %d", withTools.PromptTokens, plain.PromptTokens)
	}
	if want := tokens.Estimate("hello world") + MessageTokenOverhead; plain.PromptTokens != want {
		t.Errorf("PromptTokens = %d, want %d", plain.PromptTokens, want)
	}
	more := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hello world"},
		{"role":"assistant","content":"hi"},{"role":"user","content":"bye"}]}`))
	if more.PromptTokens < plain.PromptTokens+2*MessageTokenOverhead {
		t.Errorf("per-message overhead missing: %d vs %d", more.PromptTokens, plain.PromptTokens)
	}
	ids := BuildRequest("/completions", []byte(`{"prompt":[1,2,3,4,5,6,7,8,9,10]}`))
	if ids.PromptTokens != 10 {
		t.Errorf("token-id prompt: PromptTokens = %d, want 10", ids.PromptTokens)
	}
	batch := BuildRequest("/embeddings", []byte(`{"input":[[1,2,3],[4,5]]}`))
	if batch.PromptTokens != 5 {
		t.Errorf("token-id batch: PromptTokens = %d, want 5", batch.PromptTokens)
	}
}

// The text fields must not alias the body, which the caller may reuse.
func TestBuildRequestCopiesText(t *testing.T) {
	body := []byte(`{"messages":[{"role":"system","content":"system text"},{"role":"user","content":"user text"}]}`)
	req := BuildRequest("/chat/completions", body)
	for i := range body {
		body[i] = 'x'
	}
	if req.System != "system text" || req.LastUser != "user text" || req.Conversation != "system text\nuser text" {
		t.Errorf("text changed with the body: %q %q %q", req.System, req.LastUser, req.Conversation)
	}
}

// The unescaped text matches encoding/json's.
func TestBuildRequestUnescape(t *testing.T) {
	raw := []string{
		`plain`, `a\nb\tc\r\"q\" \\ \/ \b\f`, `\u4f60\u597D`, `\ud83d\ude00 smile`, `lone \ud800 high`,
		`lone \udc00 low`, `\ud800\u0041`, `\u00e9t\u00C9`, `end\\`, `\\\"`, `\u2028\u2029`, `x\u0000y`,
	}
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "Z", " ", "\n", "\"", "\\", "/", "\t", "é", "你", "😀", "\u2028", "\x01", "\xff", "<&>"}
	for range 300 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		enc, _ := json.Marshal(b.String())
		raw = append(raw, string(enc[1:len(enc)-1]))
	}
	for _, r := range raw {
		var want string
		if err := json.Unmarshal([]byte(`"`+r+`"`), &want); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		body := `{"messages":[{"role":"user","content":"` + r + `"}]}`
		if got := BuildRequest("/chat/completions", []byte(body)).LastUser; got != want {
			t.Errorf("%s: LastUser = %q, want %q", r, got, want)
		}
		key := `{"m\u0065ssages":[{"r\u006fle":"user","content":"` + r + `"}]}`
		if got := BuildRequest("/chat/completions", []byte(key)).LastUser; got != want {
			t.Errorf("escaped keys %s: LastUser = %q, want %q", r, got, want)
		}
	}
}

// ReadPrompt allocates the conversation and nothing else when the system
// prompt's lines and the last user turn's follow each other in it, however
// many messages there are; and no more than the text when they do not.
func TestReadPromptAllocs(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"model":"m","system":[{"type":"text","text":"s1"},{"type":"text","text":"s2"}],"tools":[{"name":"f"}],"messages":[`)
	for i := range 200 {
		fmt.Fprintf(&b, `{"role":"user","content":"question %d \u00e9"},{"role":"assistant","content":[{"type":"text","text":"answer"},{"type":"tool_use","input":{}}]},`, i)
	}
	b.WriteString(`{"role":"user","content":[{"type":"text","text":"last"},{"type":"image","source":{}},{"type":"text","text":"turn"}]}]}`)
	body := []byte(b.String())
	var req Request
	allocs := testing.AllocsPerRun(20, func() {
		req = Request{Body: body}
		req.ReadPrompt()
	})
	if allocs != 1 || req.System != "s1\ns2" || req.LastUser != "last\nturn" {
		t.Errorf("%v allocations, System %q, LastUser %q; want 1, \"s1\\ns2\", \"last\\nturn\"", allocs, req.System, req.LastUser)
	}
	// Lines that do not follow each other are joined anew.
	body = []byte(`{"messages":[{"role":"system","content":"s1"},{"role":"user","content":[{"type":"text","text":"a"},
		{"type":"tool_result","content":"r"},{"type":"text","text":"b"}]},{"role":"system","content":"s2"}]}`)
	allocs = testing.AllocsPerRun(20, func() {
		req = Request{Body: body}
		req.ReadPrompt()
	})
	if allocs != 3 || req.System != "s1\ns2" || req.LastUser != "a\nb" {
		t.Errorf("%v allocations, System %q, LastUser %q; want 3, \"s1\\ns2\", \"a\\nb\"", allocs, req.System, req.LastUser)
	}
}

// BuildRequest reads anything without panicking or looping.
func FuzzBuildRequest(f *testing.F) {
	for _, seed := range []string{
		`{"messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}],"tools":[{}]}`,
		`{"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","content":[{"type":"text","text":"r"}]}]}]}`,
		`{"input":[{"role":"user","content":[{"type":"input_text","text":"x"}]},{"type":"function_call_output","output":"o"}],"instructions":"i"}`,
		`{"prompt":["a",[1,2],3]}`, `{"input":"e"}`, `{"response_format":{"type":"json_object"},"text":{"format":{"type":"json_schema"}}}`,
		`{`, `{"messages":[`, `{"messages":[{"content":"\u`, `{"a":"\"}`, `{"messages":"x"}`, `{"messages":[1,"s",null,{}]}`,
		`{"messages":[{"role":"user","content":"a\ud800"}]}`, `[]`, ``, `{"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}`,
		`{"messages" "x"}`, `{"messages":}`, `{"tools":[`, `{"input":[{`, `{"prompt":[[`, `{"messages":[{"content":[{"type":"text","text":"a`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := BuildRequest("/chat/completions", []byte(body))
		if len(req.Conversation) > len(body) || len(req.System) > len(body) || len(req.LastUser) > len(body) {
			t.Errorf("text longer than the body: %q", body)
		}
		if req.PromptTokens < 0 {
			t.Errorf("negative PromptTokens")
		}
	})
}

// reqBenchText generates about n bytes of English or Chinese prose.
func reqBenchText(n int, chinese bool) string {
	en := []string{"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Please", "explain",
		"how", "this", "function", "works", "and", "why", "it", "returns", "an", "error", "when", "called",
		"with", "empty", "input.", "Thanks", "for", "your", "help!"}
	zh := []string{"请", "解释", "一下", "这个", "函数", "是", "如何", "工作", "的，", "为什么", "在", "输入",
		"为空", "时", "会", "返回", "错误。", "谢谢", "你的", "帮助！", "我们", "需要", "一个", "更好", "的", "方案"}
	words := en
	sep := " "
	if chinese {
		words, sep = zh, ""
	}
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(words[(i*7+i/len(words))%len(words)])
	}
	return b.String()
}

// reqBenchBody is a chat completions body whose user message is text.
func reqBenchBody(text string) []byte {
	msg, _ := json.Marshal(text)
	return []byte(`{"model":"auto","stream":true,"temperature":0.2,"metadata":{"user_tier":"gold"},` +
		`"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":` +
		string(msg) + `}]}`)
}

var reqBenchSizes = []struct {
	name string
	n    int
}{{"200B", 200}, {"4KB", 4 << 10}, {"64KB", 64 << 10}}

func BenchmarkBuildRequest(b *testing.B) {
	for _, lang := range []string{"en", "zh"} {
		for _, size := range reqBenchSizes {
			body := reqBenchBody(reqBenchText(size.n, lang == "zh"))
			b.Run(fmt.Sprintf("%s/%s", lang, size.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					req := BuildRequest("/chat/completions", body)
					if req.LastUser == "" {
						b.Fatal("no text")
					}
				}
			})
		}
	}
}

// BenchmarkBuildRequestEstimate is the part of BuildRequest that is the
// token estimate of the conversation.
func BenchmarkBuildRequestEstimate(b *testing.B) {
	for _, lang := range []string{"en", "zh"} {
		for _, size := range reqBenchSizes {
			body := reqBenchBody(reqBenchText(size.n, lang == "zh"))
			conv := BuildRequest("/chat/completions", body).Conversation
			b.Run(fmt.Sprintf("%s/%s", lang, size.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if tokens.Estimate(conv) == 0 {
						b.Fatal("no tokens")
					}
				}
			})
		}
	}
}
