package llmroute

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// seriesKey names the series a request's metrics go to: its route, and
// the model and provider of an answer or a call (configured names only,
// as the labels themselves).
type seriesKey struct{ route, model, provider string }

// seriesSet holds the series of one seriesKey, each got from its vector
// once, the first time it is written: observe finds them with one map
// read instead of a hash of their labels per series and write. (The
// series are never deleted, so a series held stays the one exported.)
type seriesSet struct {
	key      seriesKey
	ok       atomic.Pointer[prometheus.Counter]    // requests_total, status 200
	tokens   [2]atomic.Pointer[prometheus.Counter] // input, output
	cost     atomic.Pointer[prometheus.Counter]
	decision atomic.Pointer[prometheus.Observer]
	overhead atomic.Pointer[prometheus.Observer]
	attempts [numCauses]atomic.Pointer[prometheus.Counter]
	upstream atomic.Pointer[prometheus.Observer]
	ttft     atomic.Pointer[prometheus.Observer]
}

// seriesSets are the sets made so far, by key: a map that is replaced,
// never changed, so that it is read without a lock (a new key, which
// copies it, is rare: the keys are configured names).
var (
	seriesSets   atomic.Pointer[map[seriesKey]*seriesSet]
	seriesSetsMu sync.Mutex // (writers)
)

// seriesFor returns the set of k.
func seriesFor(k seriesKey) *seriesSet {
	if m := seriesSets.Load(); m != nil {
		if s := (*m)[k]; s != nil {
			return s
		}
	}
	seriesSetsMu.Lock()
	defer seriesSetsMu.Unlock()
	var next map[seriesKey]*seriesSet
	if m := seriesSets.Load(); m != nil {
		if s := (*m)[k]; s != nil {
			return s
		}
		next = make(map[seriesKey]*seriesSet, len(*m)+1)
		for k, s := range *m {
			next[k] = s
		}
	} else {
		next = make(map[seriesKey]*seriesSet, 1)
	}
	s := &seriesSet{key: k}
	next[k] = s
	seriesSets.Store(&next)
	return s
}

var directions = [2]string{"input", "output"}

// lazyCounter returns the series in p, got from get the first time.
func lazyCounter(p *atomic.Pointer[prometheus.Counter], get func() prometheus.Counter) prometheus.Counter {
	if c := p.Load(); c != nil {
		return *c
	}
	c := get()
	p.Store(&c)
	return c
}

// lazyObserver returns the series in p, got from get the first time.
func lazyObserver(p *atomic.Pointer[prometheus.Observer], get func() prometheus.Observer) prometheus.Observer {
	if o := p.Load(); o != nil {
		return *o
	}
	o := get()
	p.Store(&o)
	return o
}

// request returns requests_total's series of a status.
func (s *seriesSet) request(status int) prometheus.Counter {
	k := s.key
	if status != 200 {
		return metrics.requests.WithLabelValues(k.route, k.model, k.provider, statusLabel(status))
	}
	return lazyCounter(&s.ok, func() prometheus.Counter {
		return metrics.requests.WithLabelValues(k.route, k.model, k.provider, statusLabel(status))
	})
}

// token returns tokens_total's series of a direction (0 input, 1 output).
func (s *seriesSet) token(dir int) prometheus.Counter {
	return lazyCounter(&s.tokens[dir], func() prometheus.Counter {
		return metrics.tokens.WithLabelValues(s.key.route, s.key.model, s.key.provider, directions[dir])
	})
}

func (s *seriesSet) costs() prometheus.Counter {
	return lazyCounter(&s.cost, func() prometheus.Counter {
		return metrics.cost.WithLabelValues(s.key.route, s.key.model, s.key.provider)
	})
}

func (s *seriesSet) decided() prometheus.Observer {
	return lazyObserver(&s.decision, func() prometheus.Observer { return metrics.decision.WithLabelValues(s.key.route) })
}

func (s *seriesSet) overheads() prometheus.Observer {
	return lazyObserver(&s.overhead, func() prometheus.Observer { return metrics.overhead.WithLabelValues(s.key.route) })
}

func (s *seriesSet) attempt(c cause) prometheus.Counter {
	return lazyCounter(&s.attempts[c], func() prometheus.Counter {
		return metrics.attempts.WithLabelValues(s.key.model, s.key.provider, c.String())
	})
}

func (s *seriesSet) upstreams() prometheus.Observer {
	return lazyObserver(&s.upstream, func() prometheus.Observer {
		return metrics.upstream.WithLabelValues(s.key.model, s.key.provider)
	})
}

func (s *seriesSet) ttfts() prometheus.Observer {
	return lazyObserver(&s.ttft, func() prometheus.Observer { return metrics.ttft.WithLabelValues(s.key.model, s.key.provider) })
}
