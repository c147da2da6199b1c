/*
Package llmroute is a Caddy HTTP handler, `llm_route`, that routes LLM API
requests (OpenAI and Anthropic shapes) to models and providers, and falls
back across them before the first byte reaches the client.

# One request, step by step

 1. [Handler.ServeHTTP] (handler.go) matches the path against
    enable_on_path_suffix, reads the body once under max_body (a large
    body into a pooled buffer whose lease the attempts' bodies hold,
    bodypool.go) and calls
    parseRequest (request.go). parseRequest validates the body (nesting,
    duplicate keys, absurd numbers) and fills a [strategies.Request]: the
    endpoint, the model, the stream flag, the output cap and the body.
    Errors are written in the client's API shape (errors.go); they do not
    reach Caddy's handle_errors.

 2. resolve (route.go) turns the model field into a plan: a route, a
    registered model or provider/model (plus the client's `models` list
    when client_models is on) gives targets; each target's model at each
    of its providers is a [strategies.Candidate]. Candidates that cannot
    serve the request (context window, capabilities, price cap, endpoint)
    are dropped. It reads the request's prompt ([strategies.Request.ReadPrompt])
    only when a strategy (not a [strategies.PromptBlind] one), a limit or a
    filter needs it: a context window only when the body's length plus
    max_tokens might exceed it. It reads each pair's state
    ([upstreams.Pair]: cooldown, half-open probe, live stats) once per
    candidate; healthy candidates are ordered by the route's strategy,
    pairs cooling down follow as a last resort. resolve never changes the
    body.

 3. serve (handler.go) is the attempt loop: it tries the plan's
    candidates in order until one answers, one fails in a way the client
    must see, or the response has started. fallback.go decides what an
    error answer does beyond retry_on: a prompt too long for a model's
    context moves on only to a larger context (escalation), a
    content-policy refusal (an error, or a 200 that ends in one before
    anything reached the client; refused is the one judge of a refusal,
    the cascade's check included) only with fallback_on, and a transient
    failure is tried again on the same target (retries,
    max_retry_wait). A text stream (chat completions or messages) goes
    to the client through a splice (rescue.go): when it breaks after
    its first byte, the loop goes on with continuations — the next
    candidates get the request plus the text already sent as a
    prefill, and their events are spliced into the same stream (one id,
    one role, one finish, usage summed) — until one finishes the
    answer; a stream that ends after its finish without its terminator
    is finished for the client.

 4. attempt (handler.go) rewrites the body for its candidate
    (rewriteBody in request.go: model, target and strategy parameters,
    the client's `models` list dropped; what it can splice goes upstream
    as parts of the body read once, sendbody.go; the attempt's end ends
    the transport's readers of it), translates it when the provider
    speaks another API (package translate), shapes the upstream request
    ([upstreams.Provider.PrepareRequest]) and runs the provider's own
    reverse_proxy through an attemptWriter.

 5. The attemptWriter (writer.go) holds the status and headers until the
    first body byte of a good answer (a JSON answer until it is whole, up
    to 1 MiB; an event stream until its first event with data, which
    must not be an error, or with fallback_on content_filter until its
    first event past those that only open it, which must not be a
    refusal; JSON to a stream request, or a stream to
    another, fails at once), so a failed attempt leaves no trace on the
    response and the next candidate can be tried. Its hooks (the
    attempt's attemptRun) are told when the answer starts (the attempt's
    timer turns from the first byte to the idle stream) and when it
    commits (set the routing headers).
    Once committed it passes bytes through, checks every stream event,
    translates events for the client and reads the usage.

 6. finish (handler.go) reports the attempt's outcome to the pair's
    state: a success closes the circuit (and ramps traffic back after a
    cooldown), a failure counts toward a cooldown (a 429's Retry-After
    starts one; others let a probe through every probe_interval), the
    timing feeds the live stats. serve then sets the {llm.*} placeholders and access-log fields,
    or answers with the last upstream error.

# Several calls for one answer

When the route's strategy is cascade or consensus, ServeHTTP hands the
plan to orchestrate (multicall.go) instead of serve. A call runs serve
for one model's candidates into an in-memory response, as a non-stream
request, so each call is an ordinary run of the attempt loop (limits
admitted and settled, pair state, translation); cascade.go checks the
answers tier by tier, consensus.go asks the voters at once and votes,
and both may ask a judge model (another call). respond sends the chosen
answer with the usage of every call, as JSON or as a stream
synthesized in the client's format (synthstream.go).

# Hedging

A route with hedge has serve call attemptHedged (hedge.go) for each
candidate: the attempt runs behind a gate, and when its answer has not
started after the delay (`p95`: the pair's Percentile, from the same
live stats the strategies read; and the route's budget allows), the
rest of the candidates run in parallel through serve behind another
gate, a loop of its own (its own splice and rescue, its attempts
numbered on from the primary's). The first gate to commit a good
answer claims the response and cancels the other call, which the
record keeps as hedge_lost. A primary that answered and broke is
rescued by the loop it belongs to; a continuation is never hedged.

The calls a request runs on goroutines of its own (a hedge's two, a
consensus's votes and judges) start through spawn (goroutine.go): a
panic there is caught, the request's other calls are cancelled, and
once all have returned the panic is raised again in the request's
goroutine, where net/http recovers it as it would one in serve.

# State

The state of a provider+model pair lives in package upstreams: one
[upstreams.Pair] per pair identity (the provider's name, format, base
path, upstream addresses and api_key as written, or its state_key, plus
the upstream model name), held in a caddy.UsagePool. [Handler.Provision]
takes a reference for each model at each of its providers and
[Handler.Cleanup] releases them, so the state survives a config reload
and goes with the last config that uses it. With `state redis` a pair's
cooldowns and stats are also shared with the fleet (upstreams.Shared: a
background loop per Redis client, never on the request path).

The counters of limits and budgets live in package limits: a Subject per
limited client key, route, model and provider (quota.go builds them),
reserved on a limits.Store (the process's Memory, or Redis in front of
it) before each attempt and settled or released in finish. Client keys
are checked in keys.go before the body is read. Nothing else is kept
across requests.

Step 4 also admits the attempt (quota.go: admit), and step 6 settles
what it reserved on the answer's usage (settle).

What happened to a request is its record (record.go): begun in
ServeHTTP, told of the plan and of every attempt by serve, and
emitted once when ServeHTTP returns, into the Prometheus metrics
(metrics.go; series.go holds the series each route, model and provider
writes), the dashboard's ring (dashboard.go) and, with
decision_log, the log http.handlers.llm_route.decisions. Feedback
on an answer (feedback.go) joins it there by X-LLM-Request-Id.

# Beside the request path

  - GET …/models (models_list.go) answers the gateway's own model list,
    dispatched from the top of ServeHTTP.
  - Model discovery (discovery.go; the fetch in upstreams/discovery.go):
    providers with `models auto` are listed at provision, again once
    the config has started (Caddy's started event), and by one refresh
    goroutine each, stopped in Cleanup; the discovered models (less the
    ids registered models serve) are an atomic snapshot read through
    Handler.model, beside the registry's.
  - The admin API (admin.go, module admin.api.llm_route) reads the
    handlers that Provision registered and Cleanup unregistered: pair
    state, upstreams, discovery and quota levels (limits.Reader).

# Where things plug in

  - A strategy: a Caddy module in the namespace
    http.handlers.llm_route.strategies that implements
    [strategies.Strategy], one file in strategies/.
  - A provider format: the auth header and path shape in
    upstreams/provider.go and upstreams/transport.go; a wire format
    another API's clients can use is a translate.Pair registered with
    translate.Register.
  - A state backend: another implementation of [upstreams.Pair], made by
    upstreams.AcquirePair.
*/
package llmroute
