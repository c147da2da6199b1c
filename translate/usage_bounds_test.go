package translate

import (
	"testing"

	"github.com/tidwall/gjson"
)

// An upstream's counts are bounded: int64's largest in two Anthropic
// fields once summed to a negative prompt (Prompt wraps), which priced a
// negative cost that gave a budget back; a count beyond int64 (1e19) read
// as 0, a free answer. Every count now lies within 0..maxTokenCount, so
// sums of a request's calls cannot wrap either.
func TestUsageCountsBounded(t *testing.T) {
	const limit = int64(1) << 40 // a trillion tokens: no call comes near
	for _, tc := range []struct {
		name, obj string
	}{
		{"anthropic max", `{"input_tokens":9223372036854775807,"output_tokens":9223372036854775807,"cache_read_input_tokens":9223372036854775807,"cache_creation_input_tokens":9223372036854775807}`},
		{"openai max", `{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807,"total_tokens":1}`},
		{"beyond int64", `{"prompt_tokens":1e19,"completion_tokens":1e300,"total_tokens":1}`},
		{"responses beyond", `{"input_tokens":1e19,"output_tokens":1e19,"total_tokens":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u Usage
			u.Read(gjson.Parse(tc.obj))
			for name, n := range map[string]int64{"input": u.Input, "output": u.Output, "cache read": u.CacheRead, "cache write": u.CacheWrite, "prompt": u.Prompt()} {
				if n < 0 || n > limit {
					t.Errorf("%s = %d, want within 0..%d", name, n, limit)
				}
			}
			if u.Prompt() == 0 || u.Output == 0 {
				t.Errorf("prompt %d, output %d: a count beyond the bound reads as the bound, not as 0", u.Prompt(), u.Output)
			}
			var sum int64
			for range 1000 {
				sum += u.Prompt() + u.Output
			}
			if sum < 0 {
				t.Errorf("the usage of 1000 calls wraps: %d", sum)
			}
		})
	}
}
