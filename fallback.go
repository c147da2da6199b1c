package llmroute

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// Kinds of upstream error that the attempt loop treats on their own.
const (
	// kindContextLength: the prompt is longer than the model's context
	// window. The loop moves on only to a model with a larger context.
	kindContextLength = "context_length"
	// kindContentFilter: the provider's content policy refused the
	// request. The loop moves on only with fallback_on content_filter.
	kindContentFilter = "content_filter"
)

// Phrases of the error bodies of each kind, lower case: OpenAI's codes
// and messages, Anthropic's, vLLM's, Ollama's and llama.cpp's, Azure's.
var errorPhrases = []struct {
	kind    string
	phrases []string
}{
	{kindContextLength, []string{
		"context_length_exceeded", "maximum context length", "prompt is too long",
		"context length exceeded", "exceeds the context", "longer than the model's context length",
		"exceeds context length", "exceed_context_size", "exceeds the available context size",
		"input length exceeds", "max_model_len",
	}},
	{kindContentFilter, []string{
		"content_filter", "content_policy_violation", "content management policy",
		"content filtering policy", "responsibleaipolicyviolation",
	}},
}

// errorKind returns the kind of an upstream error body, or "".
func errorKind(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	lower := bytes.ToLower(body)
	for _, k := range errorPhrases {
		for _, p := range k.phrases {
			if bytes.Contains(lower, []byte(p)) {
				return k.kind
			}
		}
	}
	return ""
}

// classify reads the kind of an attempt's error answer and decides
// whether it moves on: a content-policy refusal does only with
// fallback_on content_filter, whatever its status; a context-length
// error is left to the loop's escalation.
func (h *Handler) classify(res *attemptResult) {
	res.kind = errorKind(res.body)
	switch res.kind {
	case kindContentFilter:
		res.outcome = outcomeFinal
		if slices.Contains(h.FallbackOn, kindContentFilter) {
			res.outcome = outcomeRetry
		}
	case kindContextLength:
		res.outcome = outcomeFinal
	}
}

// fallsBackOnRefusal reports whether an answer of candidate c that
// ends with a content-policy refusal moves on to the next candidate:
// with fallback_on content_filter, when c is not the plan's last (the
// last one's refusal is the answer).
func (h *Handler) fallsBackOnRefusal(p *plan, c *strategies.Candidate) bool {
	return slices.Contains(h.FallbackOn, kindContentFilter) && len(p.candidates) > 0 && c != &p.candidates[len(p.candidates)-1]
}

// refusal reports whether a whole answer, in its provider's format,
// ended with a refusal (see refused).
func refusal(body []byte) bool { return refused(gjson.ParseBytes(body)) }

// refused reports whether an answer or a stream event, in any API's
// format, is a refusal: OpenAI's finish_reason content_filter (chat) or
// incomplete_details.reason content_filter (responses), a message's
// refusal (chat: message.refusal, or delta.refusal in a chunk, even
// with finish_reason stop; responses: a refusal content part or
// event), Anthropic's stop_reason refusal. It is the one judge of what
// a refusal is: fallback_on content_filter asks it of the provider's
// answer, and readAnswer makes the cascade and consensus see its
// verdict (Answer.Finish "refusal").
func refused(j gjson.Result) bool {
	for _, path := range []string{"stop_reason", "delta.stop_reason"} {
		if j.Get(path).Str == "refusal" {
			return true
		}
	}
	for _, path := range []string{"incomplete_details.reason", "response.incomplete_details.reason"} {
		if j.Get(path).Str == "content_filter" {
			return true
		}
	}
	for _, ch := range j.Get("choices").Array() {
		if ch.Get("finish_reason").Str == "content_filter" ||
			ch.Get("message.refusal").Str != "" || ch.Get("delta.refusal").Str != "" {
			return true
		}
	}
	switch j.Get("type").Str {
	case "response.refusal.delta", "response.refusal.done":
		return true
	}
	for _, item := range j.Get("output").Array() {
		for _, part := range item.Get("content").Array() {
			if part.Get("type").Str == "refusal" {
				return true
			}
		}
	}
	return false
}

// escalation follows the context-length errors of one request: once a
// model's context was too small, only models with a larger known
// context are tried.
type escalation struct {
	tooLong map[string]bool // models whose context was too small
	floor   int             // the largest of their contexts
}

// skips reports whether c cannot take a prompt that was too long for a
// model tried before.
func (e *escalation) skips(c *strategies.Candidate) bool {
	return e.tooLong != nil && (e.tooLong[c.Model] || c.Context <= e.floor)
}

// escalate is told of an attempt's result on c. After a context-length
// error it reports whether one of the remaining candidates has a larger
// context (the loop then moves on to it); otherwise the provider's error
// goes to the client.
func (e *escalation) escalate(res *attemptResult, c *strategies.Candidate, rest []strategies.Candidate) {
	if res.kind != kindContextLength || res.outcome != outcomeFinal {
		return
	}
	if e.tooLong == nil {
		e.tooLong = make(map[string]bool)
	}
	e.tooLong[c.Model] = true
	e.floor = max(e.floor, c.Context)
	for i := range rest {
		if !e.skips(&rest[i]) {
			res.outcome = outcomeRetry
			return
		}
	}
}

// Backoff between the retries of one target: doubling from
// retryBackoff, at most maxRetryBackoff, each drawn between half and
// all of it.
const (
	retryBackoff    = 100 * time.Millisecond
	maxRetryBackoff = 2 * time.Second
)

// retryWait returns how long to wait before trying the same target again
// after its tries-th failure, or false to move on: a transient failure
// (a 5xx, a connect error) is retried `retries` times with jittered
// backoff; a 429 whose Retry-After is at most max_retry_wait once,
// after that wait.
func (h *Handler) retryWait(res *attemptResult, tries int, now time.Time) (time.Duration, bool) {
	if res.outcome != outcomeRetry || res.kind != "" {
		return 0, false
	}
	if res.status == http.StatusTooManyRequests {
		if res.header == nil || h.MaxRetryWait <= 0 || tries > 1 {
			return 0, false
		}
		wait := upstreams.RetryAfterAsked(res.header, now)
		return wait, wait > 0 && wait <= time.Duration(h.MaxRetryWait)
	}
	transient := res.status >= 500 && res.body != nil ||
		res.body == nil && res.err != nil && !errors.Is(res.err, errFirstByteTimeout) && !errors.Is(res.err, errUnusable)
	if !transient || tries > h.Retries {
		return 0, false
	}
	d := min(retryBackoff<<(tries-1), maxRetryBackoff)
	return d/2 + rand.N(d/2+1), true
}

// retry tries a candidate (whose state is pair) again, after a wait,
// while its failure allows (retryWait), the client is still there and
// the pair is not cooling down: a cooldown its failures opened (the
// fail_threshold reached, a half-open probe that failed) is an open
// circuit, which a retry does not go through; the loop moves on (a
// 429's Retry-After cooldown has run out by the end of its wait). Each
// retry is an attempt: again makes the nth attempt, the try-th retry
// (and records it). A client that goes away during the wait ends the
// loop there (res is then gone, as an attempt cut off by it would be):
// no other target is called for it.
func (h *Handler) retry(r *http.Request, pair upstreams.Pair, res *attemptResult, attempts *int, again func(n, try int) attemptResult) {
	for tries := 1; ; tries++ {
		wait, ok := h.retryWait(res, tries, time.Now())
		if !ok {
			return
		}
		if !sleepCtx(r.Context(), wait) {
			endGone(r, res)
			return
		}
		if pair.CooldownUntil().After(time.Now()) {
			return
		}
		next := again(*attempts+1, tries)
		if next.outcome == outcomeQuota || next.outcome == outcomeUnfit {
			return
		}
		*res = next
		*attempts++
	}
}

// sleepCtx waits for d, or less if ctx ends first (then false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
