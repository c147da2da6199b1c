package upstreams

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
)

// The defaults of model discovery.
const (
	DefaultModelsRefresh = 10 * time.Minute
	DefaultModelsTimeout = 5 * time.Second
)

// Limits on what one discovery reads.
const (
	maxModelsBody  = 8 << 20 // bytes of one page of the list
	maxModelsPages = 20      // pages of an Anthropic list
	maxModelsIDs   = 10000   // models kept
)

// validDiscovery checks models, models_refresh and models_timeout.
func (p *Provider) validDiscovery() error {
	switch p.Models {
	case "":
		if p.ModelsRefresh != 0 || p.ModelsTimeout != 0 {
			return fmt.Errorf("provider %s: models_refresh and models_timeout need models auto", p.Name)
		}
	case "auto":
		if p.Format == FormatAzure {
			return fmt.Errorf("provider %s: models auto is not supported for azure (its deployments are configured)", p.Name)
		}
	default:
		return fmt.Errorf("provider %s: models must be auto, not %q", p.Name, p.Models)
	}
	if p.ModelsRefresh < 0 || p.ModelsTimeout < 0 {
		return fmt.Errorf("provider %s: models_refresh and models_timeout must not be negative", p.Name)
	}
	if p.ModelsRefresh > 0 && time.Duration(p.ModelsRefresh) < time.Second {
		return fmt.Errorf("provider %s: models_refresh must be at least 1s", p.Name)
	}
	return nil
}

// Discovers reports whether the provider's models are discovered
// (models auto).
func (p *Provider) Discovers() bool { return p.Models == "auto" && p.Format != FormatAzure }

// RefreshInterval is how often the model list is fetched again.
func (p *Provider) RefreshInterval() time.Duration {
	if p.ModelsRefresh > 0 {
		return time.Duration(p.ModelsRefresh)
	}
	return DefaultModelsRefresh
}

// FetchTimeout bounds one fetch of the model list.
func (p *Provider) FetchTimeout() time.Duration {
	if p.ModelsTimeout > 0 {
		return time.Duration(p.ModelsTimeout)
	}
	return DefaultModelsTimeout
}

// ListModels fetches the ids of the models the provider lists: GET
// <base_path>/models through the provider's own reverse proxy (its
// upstreams, TLS and credentials), in the shape of its format: OpenAI's
// `{"data":[{"id":…}]}`, or Anthropic's, which pages with has_more and
// after_id. It takes at most FetchTimeout.
func (p *Provider) ListModels(ctx context.Context) ([]string, error) {
	if p.proxy == nil {
		return nil, errors.New("the provider is not provisioned")
	}
	ctx, cancel := context.WithTimeout(ctx, p.FetchTimeout())
	defer cancel()
	var ids []string
	seen := make(map[string]bool)
	after := ""
	for range maxModelsPages {
		body, err := p.getModels(ctx, after)
		if err != nil {
			return nil, err
		}
		if !gjson.ValidBytes(body) || !gjson.GetBytes(body, "data").IsArray() {
			return nil, errors.New("the model list is not JSON with a data array")
		}
		for _, m := range gjson.GetBytes(body, "data").Array() {
			id := m.Get("id").Str
			if id == "" || seen[id] || len(id) > 256 || len(ids) == maxModelsIDs {
				continue
			}
			seen[id] = true
			ids = append(ids, id)
		}
		last := gjson.GetBytes(body, "last_id").Str
		if p.Format != FormatAnthropic || !gjson.GetBytes(body, "has_more").Bool() || last == "" || last == after {
			return ids, nil
		}
		after = last
	}
	return ids, nil
}

// getModels runs one GET of the model list through the proxy.
func (p *Provider) getModels(ctx context.Context, after string) ([]byte, error) {
	u := url.URL{Scheme: "http", Host: "llm-route.invalid", Path: p.BasePath + "/models"}
	if p.Format == FormatAnthropic {
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after_id", after)
		}
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if p.Format == FormatAnthropic {
		req.Header.Set("anthropic-version", p.APIVersion)
	}
	repl := caddy.NewReplacer()
	w := &capturedResponse{header: make(http.Header)}
	req = caddyhttp.PrepareRequest(req, repl, w, &caddyhttp.Server{})
	err = p.proxy.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	switch {
	case w.tooLong:
		return nil, fmt.Errorf("the model list is larger than %d bytes", maxModelsBody)
	case err != nil:
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.Err != nil {
			err = he.Err
		}
		return nil, fmt.Errorf("fetching the model list: %v", err)
	case w.status != http.StatusOK:
		return nil, fmt.Errorf("fetching the model list: status %d", w.status)
	}
	return w.body, nil
}

// capturedResponse is the response writer of a discovery: it keeps the
// status and up to maxModelsBody bytes.
type capturedResponse struct {
	header  http.Header
	status  int
	body    []byte
	tooLong bool
}

func (c *capturedResponse) Header() http.Header { return c.header }

func (c *capturedResponse) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *capturedResponse) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if len(c.body)+len(b) > maxModelsBody {
		c.tooLong = true
		return 0, errors.New("model list too long")
	}
	c.body = append(c.body, b...)
	return len(b), nil
}
