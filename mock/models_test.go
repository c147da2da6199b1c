package mock

import (
	"net/http"
	"testing"

	"github.com/tidwall/gjson"
)

func TestModelList(t *testing.T) {
	h := provision(t, &Handler{Models: []string{"m1", "m2", "m3"}})
	w := serve(t, h, newRequest("GET", "/v1/models", ""))
	if got := gjson.Get(w.Body.String(), "data.#.id").String(); w.Code != http.StatusOK || got != `["m1","m2","m3"]` {
		t.Fatalf("openai list: %d %s", w.Code, w.Body)
	}
	// Anthropic's shape, paged.
	w = serve(t, h, newRequest("GET", "/v1/models?limit=2", "", "anthropic-version", "2023-06-01"))
	body := w.Body.String()
	if gjson.Get(body, "data.#.id").String() != `["m1","m2"]` || !gjson.Get(body, "has_more").Bool() ||
		gjson.Get(body, "last_id").Str != "m2" || gjson.Get(body, "data.0.type").Str != "model" {
		t.Fatalf("anthropic page 1: %s", body)
	}
	w = serve(t, h, newRequest("GET", "/v1/models?limit=2&after_id=m2", "", "anthropic-version", "2023-06-01"))
	body = w.Body.String()
	if gjson.Get(body, "data.#.id").String() != `["m3"]` || gjson.Get(body, "has_more").Bool() {
		t.Fatalf("anthropic page 2: %s", body)
	}
}

func TestListStatusFault(t *testing.T) {
	h := provision(t, &Handler{Faults: []string{"list_status,code=500,after=1"}})
	chat := func() int {
		return serve(t, h, newRequest("POST", "/v1/chat/completions", `{"model":"x","messages":[]}`)).Code
	}
	list := func() int { return serve(t, h, newRequest("GET", "/v1/models", "")).Code }
	if c := chat(); c != http.StatusOK {
		t.Fatalf("chat before: %d", c)
	}
	if c := list(); c != http.StatusOK {
		t.Fatalf("first list: %d, want 200 (after=1)", c)
	}
	for range 2 {
		if c := list(); c != http.StatusInternalServerError {
			t.Fatalf("later list: %d, want 500", c)
		}
	}
	if c := chat(); c != http.StatusOK {
		t.Fatalf("chat after: %d, the fault is for the list alone", c)
	}
	// From the header, without after: every list request.
	h2 := provision(t, &Handler{Name: "m"})
	w := serve(t, h2, newRequest("GET", "/v1/models", "", "X-Mock-Fault", "m:list_status,code=503"))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("header list_status: %d", w.Code)
	}
}
