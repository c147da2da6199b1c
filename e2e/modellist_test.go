package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

const limitedKey = "sk-limited-5d7e9f1a3c"

// The gateway's own model list, read with the SDKs' models.list: every
// route, alias and model for a key that may use all, only its own for a
// limited key, nothing without a valid key.
func TestGatewayModelList(t *testing.T) {
	start(t, setup{Mocks: defaultMocks(), Route: defaultRoute + fmt.Sprintf(`
		route fast {
			models only-alpha only-beta
		}
		key all {
			secret %s
		}
		key limited {
			secret %s
			models chat fast
		}
`, clientKey, limitedKey)})
	all := []string{"fast", "auto", "cheapest", "fastest", "best_quality", "chat", "only-alpha", "only-beta", "claude-chat"}

	oaList := func(c openai.Client) ([]string, error) {
		var ids []string
		iter := c.Models.ListAutoPaging(ctxT(t))
		for iter.Next() {
			if iter.Current().Object != "model" {
				t.Errorf("entry %+v is not a model object", iter.Current())
			}
			ids = append(ids, iter.Current().ID)
		}
		return ids, iter.Err()
	}
	antList := func(c anthropic.Client, limit int64) ([]string, error) {
		var ids []string
		iter := c.Models.ListAutoPaging(ctxT(t), anthropic.ModelListParams{Limit: anthropic.Int(limit)})
		for iter.Next() {
			ids = append(ids, iter.Current().ID)
		}
		return ids, iter.Err()
	}

	ids, err := oaList(oaClient(t))
	if err != nil || !slices.Equal(ids, all) {
		t.Errorf("OpenAI models.list: %v %v, want %v", ids, err, all)
	}
	// Anthropic's shape, paged 4 at a time.
	ids, err = antList(antClient(t), 4)
	if err != nil || !slices.Equal(ids, all) {
		t.Errorf("Anthropic models.list: %v %v, want %v", ids, err, all)
	}

	// A limited key sees what it may use.
	want := []string{"fast", "chat"}
	ids, err = oaList(oaClient(t, oaoption.WithAPIKey(limitedKey)))
	if err != nil || !slices.Equal(ids, want) {
		t.Errorf("OpenAI models.list with the limited key: %v %v, want %v", ids, err, want)
	}
	ids, err = antList(antClient(t, antoption.WithAPIKey(limitedKey)), 1)
	if err != nil || !slices.Equal(ids, want) {
		t.Errorf("Anthropic models.list with the limited key: %v %v, want %v", ids, err, want)
	}

	// models.retrieve.
	c := oaClient(t)
	if m, err := c.Models.Get(ctxT(t), "chat"); err != nil || m.ID != "chat" {
		t.Errorf("OpenAI models.retrieve chat: %+v %v", m, err)
	}
	ac := antClient(t, antoption.WithAPIKey(limitedKey))
	if m, err := ac.Models.Get(ctxT(t), "fast", anthropic.ModelGetParams{}); err != nil || m.ID != "fast" {
		t.Errorf("Anthropic models.retrieve fast: %+v %v", m, err)
	}
	var apiErr *anthropic.Error
	if _, err := ac.Models.Get(ctxT(t), "only-alpha", anthropic.ModelGetParams{}); !asError(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("Anthropic models.retrieve of a model the key may not use: %v, want 404", err)
	}

	// Without a valid key: 401, in the client's shape.
	hc := newHTTPClient(t)
	res := do(t, hc, http.MethodGet, gatewayURL+"/v1/models", nil, 0)
	expectOpenAIError(t, res, http.StatusUnauthorized, "missing_api_key")
	res = do(t, hc, http.MethodGet, gatewayURL+"/v1/models", nil, 0, "x-api-key", "sk-wrong", "anthropic-version", "2023-06-01")
	expectAnthropicError(t, res, http.StatusUnauthorized, "authentication_error")
	var oaErr *openai.Error
	if _, err := oaList(oaClient(t, oaoption.WithAPIKey("sk-wrong"))); !asError(err, &oaErr) || oaErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("OpenAI models.list with a wrong key: %v, want 401", err)
	}
	// A bad page size is the client's error.
	res = do(t, hc, http.MethodGet, gatewayURL+"/v1/models?limit=0", nil, 0, "x-api-key", clientKey, "anthropic-version", "2023-06-01")
	expectAnthropicError(t, res, http.StatusBadRequest, "invalid_request_error")
}
