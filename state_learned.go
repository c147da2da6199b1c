package llmroute

import (
	"time"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// sharedState is the handler's Redis as learning strategies share their
// state through it: the client, prefix and timeout of the limits' store,
// exchanged every sync_interval.
func (h *Handler) sharedState() *strategies.SharedState {
	interval := time.Duration(h.State.SyncInterval)
	if interval <= 0 {
		interval = upstreams.DefaultSyncInterval
	}
	return &strategies.SharedState{Client: h.redis.Client(), Prefix: h.redis.Prefix(), Timeout: h.redis.Timeout(), Interval: interval,
		Logger: h.logger}
}
