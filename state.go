package llmroute

import (
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// State says where the counters of limits and budgets, and the
// cooldowns and live stats of the provider+model pairs, live.
type State struct {
	// `memory` (default): in this process, kept across config reloads.
	// `redis`: counters in Redis, shared by every instance that uses the
	// same server and prefix; cooldowns and live stats kept in each
	// process and exchanged through Redis every sync_interval.
	Backend string `json:"backend,omitempty"`

	// The Redis URL: redis://[user:password@]host[:port][/db], or
	// rediss:// for TLS. Placeholders such as {env.REDIS_URL} are
	// resolved at provision.
	URL string `json:"url,omitempty"`

	// The Redis user and password, replacing those of the URL; they may
	// be placeholders.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// What happens while Redis cannot be reached: `allow` (default: the
	// limits are kept in this process meanwhile) or `deny` (requests
	// with a limit get 429).
	OnError string `json:"on_error,omitempty"`

	// The longest a request waits on Redis. Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// The prefix of every Redis key. Default: `llm_route:`.
	Prefix string `json:"prefix,omitempty"`

	// How often each instance exchanges the pairs' live stats and
	// cooldowns with Redis; a cooldown it opens or closes is sent at
	// once. Default: 1s.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`
}

// Validate checks the values.
func (s *State) Validate() error {
	switch s.Backend {
	case "", "memory":
		if s.URL != "" {
			return fmt.Errorf("state: a url needs the redis backend")
		}
	case "redis":
		if s.URL == "" {
			return fmt.Errorf("state redis: a url is required")
		}
	default:
		return fmt.Errorf("state: unknown backend %q (want memory or redis)", s.Backend)
	}
	if _, err := limits.ParseOnError(s.OnError); s.OnError != "" && err != nil {
		return fmt.Errorf("state: %v", err)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("state: timeout must not be negative")
	}
	if s.SyncInterval < 0 {
		return fmt.Errorf("state: sync_interval must not be negative")
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"state: timeout", s.Timeout}, {"state: sync_interval", s.SyncInterval}} {
		if err := upstreams.ValidDuration(d.name, d.v); err != nil {
			return err
		}
	}
	return nil
}

// openRedis opens the handler's Redis when the state lives there: the
// store of the limit counters (in front of the process's memory store,
// which holds the limits while Redis is unreachable) and the sharing of
// the pairs' cooldowns and stats. Provision calls it before it acquires
// the pairs, whether anything is limited or not.
func (h *Handler) openRedis() error {
	if h.State == nil || h.State.Backend != "redis" {
		return nil
	}
	h.memory = limits.AcquireMemory()
	repl := caddy.NewReplacer()
	onError, _ := limits.ParseOnError(h.State.OnError)
	opts := limits.RedisOptions{
		URL:      repl.ReplaceKnown(h.State.URL, ""),
		Username: repl.ReplaceKnown(h.State.Username, ""),
		Password: repl.ReplaceKnown(h.State.Password, ""),
		Timeout:  time.Duration(h.State.Timeout),
		OnError:  onError,
		Prefix:   h.State.Prefix,
		Local:    h.memory,
		Logger:   h.logger,
	}
	interval := time.Duration(h.State.SyncInterval)
	// One client per server and settings, shared by the configs that use
	// it, so a reload keeps it open for the requests still in flight.
	h.redisKey = fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprintf("%q %q %q %v %v %q %v", opts.URL, opts.Username, opts.Password, opts.Timeout, opts.OnError, opts.Prefix, interval))))
	v, _, err := redisClients.LoadOrNew(h.redisKey, func() (caddy.Destructor, error) {
		r, err := limits.NewRedis(opts)
		if err != nil {
			return nil, err
		}
		return &pooledRedis{r, upstreams.NewShared(upstreams.SharedOptions{
			Client:   r.Client(),
			Prefix:   r.Prefix(),
			Timeout:  r.Timeout(),
			Interval: interval,
			Logger:   h.logger,
		})}, nil
	})
	if err != nil {
		h.redisKey = ""
		return fmt.Errorf("state redis: %v", err)
	}
	pr := v.(*pooledRedis)
	h.redis, h.shared = pr.Redis, pr.shared
	return nil
}

// openStore sets up the store of the handler's counters, when anything
// is limited: the Redis store openRedis opened, or else the process's
// memory store.
func (h *Handler) openStore() error {
	if h.memory == nil {
		h.memory = limits.AcquireMemory()
	}
	h.quotas = h.memory
	if h.redis != nil {
		h.quotas = h.redis
	}
	return nil
}

// redisClients holds the Redis stores in use, by their settings.
var redisClients = caddy.NewUsagePool()

// pooledRedis is a Redis store's entry in the pool, with the sharing of
// pair state on the same client; both close with the last config that
// uses them (which has released its pairs before).
type pooledRedis struct {
	*limits.Redis
	shared *upstreams.Shared
}

// Destruct implements caddy.Destructor. The connections close once the
// requests still under way on the old config have settled.
func (p *pooledRedis) Destruct() error {
	p.shared.Close()
	p.CloseWhenSettled()
	return nil
}

// closeStore releases what openRedis and openStore took.
// releaseStore lets go of the handler's limit store once, when the
// handler has been cleaned up and its last request has ended (whichever
// comes last): a request of a replaced config may still reserve on it (a
// retry after a 429's wait, the next candidate, a rescue), so the Redis
// client of settings a reload changed must stay open until then.
func (h *Handler) releaseStore() {
	if atomic.CompareAndSwapInt32(&h.released, 0, 1) {
		h.closeStore()
	}
}

// requestDone notes the end of a request; the last one of a handler that
// has been cleaned up releases its store.
func (h *Handler) requestDone() {
	if atomic.AddInt64(&h.requests, -1) == 0 && atomic.LoadInt32(&h.cleaned) == 1 {
		h.releaseStore()
	}
}

func (h *Handler) closeStore() {
	if h.redisKey != "" {
		_, _ = redisClients.Delete(h.redisKey)
	}
	if h.memory != nil {
		limits.ReleaseMemory()
	}
}

// unmarshalState reads the state subdirective. Syntax:
//
//	state memory
//	state redis <url> {
//		username <name>
//		password <placeholder>
//		on_error allow|deny
//		timeout <duration>
//		prefix <prefix>
//		sync_interval <duration>
//	}
func unmarshalState(d *caddyfile.Dispenser) (*State, error) {
	s := new(State)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	s.Backend = d.Val()
	if d.NextArg() {
		s.URL = d.Val()
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		var v string
		if !d.Args(&v) || d.NextArg() {
			return nil, d.ArgErr()
		}
		switch dir {
		case "username":
			s.Username = v
		case "password":
			s.Password = v
		case "on_error":
			s.OnError = v
		case "prefix":
			s.Prefix = v
		case "timeout":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("state: invalid timeout %q", v)
			}
			if dur == 0 {
				return nil, errZero(d, "timeout")
			}
			s.Timeout = caddy.Duration(dur)
		case "sync_interval":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("state: invalid sync_interval %q", v)
			}
			if dur == 0 {
				return nil, errZero(d, "sync_interval")
			}
			s.SyncInterval = caddy.Duration(dur)
		default:
			return nil, d.Errf("state: unrecognized subdirective: %s", dir)
		}
	}
	return s, nil
}
