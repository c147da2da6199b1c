package llmroute

import (
	"net/http/httptest"
	"testing"
)

// The credential of a request, whatever case its client writes the
// bearer scheme in (it is case-insensitive), or from the API key headers.
func TestClientSecret(t *testing.T) {
	for _, tc := range []struct {
		name, header, value, want string
	}{
		{"bearer", "Authorization", "Bearer sk-1", "sk-1"},
		{"lower-case scheme", "Authorization", "bearer sk-1", "sk-1"},
		{"upper-case scheme", "Authorization", "BEARER sk-1", "sk-1"},
		{"spaces around", "Authorization", "  Bearer   sk-1  ", "sk-1"},
		{"another scheme", "Authorization", "Basic dXNlcjpwYXNz", ""},
		{"scheme alone", "Authorization", "Bearer", ""},
		{"x-api-key", "X-Api-Key", " sk-2 ", "sk-2"},
		{"api-key", "Api-Key", "sk-3", "sk-3"},
		{"x-goog-api-key", "X-Goog-Api-Key", "sk-4", "sk-4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
			r.Header.Set(tc.header, tc.value)
			if got := clientSecret(r); got != tc.want {
				t.Errorf("clientSecret(%s: %q) = %q, want %q", tc.header, tc.value, got, tc.want)
			}
		})
	}
}
