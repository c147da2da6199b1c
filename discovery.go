package llmroute

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// Model discovery: a provider with `models auto` has its model list
// fetched at provision (each fetch bounded by its models_timeout) and
// every models_refresh after that, by one goroutine per such provider
// that Cleanup stops. Each listed model becomes a model of the handler,
// served by every discovering provider that lists it, unless the
// registry has a model of that name (the registry's entry wins) or a
// registered model already serves that id at that provider (its
// upstream_name there: the id is that model's, not one of its own). A
// registry entry whose name holds a `*` is a template: a discovered
// model whose id matches it (path.Match) takes its prices, quality,
// context, capabilities and limits. A failed fetch keeps the last list
// known for the provider, across config reloads too (the lists live in
// a pool, by provider identity), and says so in the log and the admin
// API.
//
// The fetch at provision runs before the config serves: a provider that
// is a site of the same Caddy is not listening yet on a cold start, or
// is still the previous config's on a reload. So each provider's list is
// fetched again as soon as the config has started (Caddy's "started"
// event), and a failure of the fetch at provision is only a debug
// message: the fetch after the start says whether the provider is down.
// On a reload the previous config still listens when the new one has
// started (Caddy stops it just after, and its sockets share the port), so
// the list is fetched once more when a previous handler has been cleaned
// up (handlerRetired): by then its config has stopped serving.

// modelLists holds the last model list of each discovering provider,
// by its identity, across configurations.
var modelLists = caddy.NewUsagePool()

// modelList is what discovery knows of one provider's models.
type modelList struct {
	mu       sync.Mutex
	ids      []string
	fetched  time.Time // of the last successful fetch
	err      string    // of the last fetch; "" when it succeeded
	failedAt time.Time
	fetches  int64  // fetches finished, failed ones included
	version  uint64 // counts the changes of ids
}

// Destruct implements caddy.Destructor.
func (*modelList) Destruct() error { return nil }

// listStatus is a copy of a modelList's state.
type listStatus struct {
	IDs      []string
	Fetched  time.Time
	Err      string
	FailedAt time.Time
	Fetches  int64
	Version  uint64
}

func (l *modelList) status() listStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return listStatus{IDs: l.ids, Fetched: l.fetched, Err: l.err, FailedAt: l.failedAt, Fetches: l.fetches, Version: l.version}
}

// discovery is a handler's model discovery.
type discovery struct {
	h       *Handler
	provs   []*upstreams.Provider // the discovering providers, in config order
	lists   map[string]*modelList // by provider name
	catalog atomic.Pointer[map[string]*Model]

	// the ids that registered models serve at each provider (provider
	// name, upstream name): such a listed id is not a model of its own
	registered map[[2]string]bool

	// set while the fetches at provision run (the refresh starts after)
	provisioning bool

	mu    sync.Mutex
	pairs map[[2]string]upstreams.Pair // acquired for discovered models: provider name, model id
	built map[string]uint64            // the version of each list the catalog was built from

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// isTemplate reports whether a registry entry is a template for
// discovered models.
func isTemplate(m *Model) bool { return m != nil && slices.Contains([]byte(m.Name), '*') }

// model returns the model clients call name: a registered one, or one
// discovered; nil if none.
func (h *Handler) model(name string) *Model {
	if m := h.models[name]; m != nil {
		return m
	}
	if h.disc != nil {
		if c := h.disc.catalog.Load(); c != nil {
			return (*c)[name]
		}
	}
	return nil
}

// discoveredModels returns the discovered models, nil when none.
func (h *Handler) discoveredModels() map[string]*Model {
	if h.disc != nil {
		if c := h.disc.catalog.Load(); c != nil {
			return *c
		}
	}
	return nil
}

// startDiscovery fetches the model lists of the discovering providers,
// all at once, each within its timeout, then starts their refresh.
func (h *Handler) startDiscovery(ctx caddy.Context) {
	var provs []*upstreams.Provider
	for _, p := range h.Providers {
		if p.Discovers() {
			provs = append(provs, p)
		}
	}
	if len(provs) == 0 {
		return
	}
	d := &discovery{h: h, provs: provs, lists: make(map[string]*modelList),
		registered: make(map[[2]string]bool),
		pairs:      make(map[[2]string]upstreams.Pair), built: make(map[string]uint64)}
	for _, m := range h.models {
		for _, s := range m.serving {
			d.registered[[2]string{s.provider.Name, m.UpstreamName}] = true
		}
	}
	started, retired := configStarted(ctx), handlerRetired()
	for _, p := range provs {
		v, _, _ := modelLists.LoadOrNew(p.Identity(), func() (caddy.Destructor, error) { return new(modelList), nil })
		d.lists[p.Name] = v.(*modelList)
	}
	h.disc = d
	var wg sync.WaitGroup
	failed := make([]bool, len(provs))
	d.provisioning = true
	for i, p := range provs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok := d.fetch(ctx, p)
			failed[i] = !ok
		}()
	}
	wg.Wait()
	d.provisioning = false
	d.rebuild()
	loopCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for i, p := range provs {
		d.wg.Add(1)
		go d.refresh(loopCtx, p, failed[i], started, retired)
	}
}

// refresh fetches p's list once the config has started (when started
// closes; nil if that is not known) and once more when a handler of an
// earlier config has been cleaned up (retired closes), then every refresh
// interval until ctx ends. After a failed fetch it tries again sooner: in
// 1s, then twice as long each time, up to the interval.
func (d *discovery) refresh(ctx context.Context, p *upstreams.Provider, failed bool, started, retired <-chan struct{}) {
	defer d.wg.Done()
	interval, retry := p.RefreshInterval(), min(retryFirst, p.RefreshInterval())
	wait := interval
	if failed {
		wait = retry
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-started:
			started = nil
		case <-retired:
			retired = nil
		case <-t.C:
		}
		// (A list shared with another config's provider of the same
		// identity may have changed by that one's fetch.)
		_, ok := d.fetch(ctx, p)
		if d.stale() {
			d.rebuild()
		}
		if wait = interval; !ok {
			wait, retry = retry, min(2*retry, interval)
		} else {
			retry = min(retryFirst, interval)
		}
		t.Reset(wait)
	}
}

// retryFirst is the first wait after a failed fetch.
const retryFirst = time.Second

// fetch fetches p's model list and records the outcome; it reports
// whether the list changed and whether the fetch succeeded. A failure
// is a warning, or a debug message for the fetch at provision.
func (d *discovery) fetch(ctx context.Context, p *upstreams.Provider) (changed, ok bool) {
	ids, err := p.ListModels(ctx)
	if ctx.Err() != nil {
		return false, false // the config is going away
	}
	l := d.lists[p.Name]
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fetches++
	if err != nil {
		l.err, l.failedAt = err.Error(), time.Now()
		fields := []zap.Field{zap.String("provider", p.Name), zap.Error(err), zap.Int("models", len(l.ids))}
		if !l.fetched.IsZero() {
			fields = append(fields, zap.Time("last_success", l.fetched))
		}
		if d.provisioning {
			d.h.logger.Debug("model discovery failed before the config started; trying again once it has", fields...)
		} else {
			d.h.logger.Warn("model discovery failed; keeping the last known list", fields...)
		}
		return false, false
	}
	changed = !slices.Equal(ids, l.ids)
	if changed {
		l.version++
	}
	l.ids, l.fetched, l.err = ids, time.Now(), ""
	d.h.logger.Debug("model discovery", zap.String("provider", p.Name), zap.Int("models", len(ids)), zap.Bool("changed", changed))
	return changed, true
}

// rebuild makes the catalog of discovered models from the lists.
func (d *discovery) rebuild() {
	h := d.h
	cat := make(map[string]*Model)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.provs {
		st := d.lists[p.Name].status()
		d.built[p.Name] = st.Version
		for _, id := range st.IDs {
			if h.models[id] != nil || d.registered[[2]string{p.Name, id}] {
				continue // the registry's entry overrides, or serves it
			}
			m := cat[id]
			if m == nil {
				m = h.newDiscovered(id)
				cat[id] = m
			}
			key := [2]string{p.Name, id}
			pair := d.pairs[key]
			if pair == nil {
				pair = upstreams.AcquirePair(p, id, h.shared)
				d.pairs[key] = pair
			}
			m.Providers = append(m.Providers, p.Name)
			m.serving = append(m.serving, serving{p, pair})
		}
	}
	d.catalog.Store(&cat)
}

// stale reports whether a list changed since the catalog was built.
func (d *discovery) stale() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.provs {
		if d.lists[p.Name].status().Version != d.built[p.Name] {
			return true
		}
	}
	return false
}

// newDiscovered is the model of a discovered id, with the settings of
// the first template it matches.
func (h *Handler) newDiscovered(id string) *Model {
	m := &Model{Name: id}
	for _, t := range h.templates {
		if ok, _ := path.Match(t.Name, id); ok {
			*m = *t
			m.Name, m.Providers, m.serving = id, nil, nil
			if !m.Limits.Empty() {
				m.subject = limits.NewSubject("model:"+id, m.Limits, h.resetLoc)
			}
			break
		}
	}
	m.UpstreamName = id
	m.self = []*Target{{Model: id}}
	return m
}

// stopDiscovery stops the refresh and waits for it, then releases the
// pairs and the lists discovery took.
func (h *Handler) stopDiscovery() {
	d := h.disc
	if d == nil {
		return
	}
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for key := range d.pairs {
		upstreams.ReleasePair(h.providers[key[0]], key[1], h.shared)
	}
	d.pairs = nil
	for _, p := range d.provs {
		_, _ = modelLists.Delete(p.Identity())
	}
}

// validTemplate checks a registry entry for discovered models.
func validTemplate(m *Model) error {
	if _, err := path.Match(m.Name, ""); err != nil {
		return fmt.Errorf("model %s: invalid pattern: %v", m.Name, err)
	}
	if len(m.Providers) > 0 || m.UpstreamName != "" {
		return fmt.Errorf("model %s: a pattern sets defaults for discovered models, which take their providers and names from the lists: no providers or upstream_name", m.Name)
	}
	return nil
}

// retirement is closed, and replaced by a new channel, each time a
// handler is cleaned up.
var retirement = struct {
	mu sync.Mutex
	c  chan struct{}
}{c: make(chan struct{})}

// handlerRetired returns a channel closed when the next handler is
// cleaned up.
func handlerRetired() <-chan struct{} {
	retirement.mu.Lock()
	defer retirement.mu.Unlock()
	return retirement.c
}

// retire tells those waiting on handlerRetired that a handler was
// cleaned up.
func retire() {
	retirement.mu.Lock()
	defer retirement.mu.Unlock()
	close(retirement.c)
	retirement.c = make(chan struct{})
}

// configStarted returns a channel closed once the config that ctx
// provisions has started (Caddy's "started" event), or nil when that
// cannot be known (no events app, as in tests that provision alone).
func configStarted(ctx caddy.Context) <-chan struct{} {
	app, err := ctx.AppIfConfigured("events")
	if err != nil {
		return nil
	}
	events, ok := app.(*caddyevents.App)
	if !ok {
		return nil
	}
	s := &startSignal{c: make(chan struct{})}
	if events.On("started", s) != nil {
		return nil // subscriptions are closed: the config has started
	}
	return s.c
}

// startSignal closes c on the event it is subscribed to.
type startSignal struct {
	once sync.Once
	c    chan struct{}
}

// Handle implements caddyevents.Handler.
func (s *startSignal) Handle(context.Context, caddy.Event) error {
	s.once.Do(func() { close(s.c) })
	return nil
}
