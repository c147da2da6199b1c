package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/mock"
)

// A request llm_mock holds (no_answer, a stall) ends when the server
// that runs the mock shuts down, here by a reload: the client still
// waiting sees its connection closed rather than an answer, and the old
// server's shutdown is not held (with Caddy's default eternal grace
// period, a stop would otherwise wait for good).
func TestMockHeldRequestsEndOnReload(t *testing.T) {
	s := setup{Mocks: []mockSite{{Port: portExtra1, Name: "holder", Text: "Held for good."}}}
	start(t, s)
	before := mock.Served("holder")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hold := func(fault string, stream bool) <-chan error {
		body := fmt.Sprintf(`{"model":"m","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", portExtra1), strings.NewReader(body))
		req.Header.Set("X-Mock-Fault", fault)
		errc := make(chan error, 1)
		go func() {
			resp, err := new(http.Client).Do(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errc <- err
		}()
		return errc
	}
	held := map[string]<-chan error{
		"no_answer":    hold("no_answer", false),
		"stall stream": hold("stall,after=1", true),
	}
	for mock.Served("holder") < before+2 {
		if ctx.Err() != nil {
			t.Fatal("the mock never got the requests")
		}
		time.Sleep(10 * time.Millisecond) // a poll interval, not a timing assumption
	}

	loadConfig(t, s)
	for name, errc := range held {
		if err := <-errc; err == nil || ctx.Err() != nil {
			t.Errorf("%s: the client got %v after the reload, want its connection closed", name, err)
		}
	}
}
