package mock

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Kinds of error a status fault's body can tell.
const (
	errorContextLength = "context_length"
	errorContentFilter = "content_filter"
)

// Fault kinds. See the package documentation for what each one does.
const (
	faultStatus         = "status"
	faultReset          = "reset"
	faultNoAnswer       = "no_answer"
	faultSlowFirstToken = "slow_first_token"
	faultCut            = "cut"
	faultCutMid         = "cut_mid"
	faultStall          = "stall"
	faultMalformed      = "malformed"
	faultNoDone         = "no_done"
	faultListStatus     = "list_status"
	faultErrorEvent     = "error_event"
)

// faultKeys lists, for each fault kind, the keys it accepts
// besides count, which every kind accepts.
var faultKeys = map[string][]string{
	faultStatus:         {"code", "retry_after", "retry_after_ms", "retry_after_date", "error"},
	faultReset:          nil,
	faultNoAnswer:       nil,
	faultSlowFirstToken: {"delay"},
	faultCut:            {"after"},
	faultCutMid:         {"after"},
	faultStall:          {"after"},
	faultMalformed:      {"after"},
	faultNoDone:         nil,
	faultListStatus:     {"code", "after"},
	faultErrorEvent:     {"after"},
}

// fault is one parsed fault spec, such as "status,code=429,retry_after=1".
type fault struct {
	spec   string // the spec as written, for logs
	kind   string
	target string // mock name from a "name:" prefix; header faults only

	code           int           // status: the status code to reply with
	errorKind      string        // status: context_length or content_filter: the error body says so
	retryAfter     int           // status: Retry-After in seconds; -1 if unset
	retryAfterMS   int           // status: retry-after-ms; -1 if unset
	retryAfterDate int           // status: Retry-After as a date this many seconds ahead; -1 if unset
	delay          time.Duration // slow_first_token: how long to hold back the first token
	after          int           // cut, stall, malformed, error_event: content chunks sent before the fault
	count          int           // config faults only: apply to the first count requests; 0 = always
}

// parseFault parses a single fault spec of the form kind[,key=value...].
func parseFault(spec string) (fault, error) {
	parts := strings.Split(spec, ",")
	f := fault{
		spec:           strings.TrimSpace(spec),
		kind:           strings.TrimSpace(parts[0]),
		code:           http.StatusServiceUnavailable,
		retryAfter:     -1,
		retryAfterMS:   -1,
		retryAfterDate: -1,
		delay:          5 * time.Second,
		after:          2,
	}
	if f.kind == "" {
		return f, fmt.Errorf("empty fault spec")
	}
	allowed, ok := faultKeys[f.kind]
	if !ok {
		return f, fmt.Errorf("unknown fault kind %q", f.kind)
	}

	for _, part := range parts[1:] {
		key, val, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found || key == "" || val == "" {
			return f, fmt.Errorf("fault %s: expected key=value, got %q", f.kind, part)
		}
		if key != "count" && !slices.Contains(allowed, key) {
			return f, fmt.Errorf("fault %s: unknown key %q", f.kind, key)
		}

		var err error
		switch key {
		case "code":
			f.code, err = parseInt(val, 400, 599)
		case "retry_after":
			f.retryAfter, err = parseInt(val, 0, -1)
		case "retry_after_ms":
			f.retryAfterMS, err = parseInt(val, 0, -1)
		case "retry_after_date":
			f.retryAfterDate, err = parseInt(val, 0, -1)
		case "after":
			f.after, err = parseInt(val, 0, -1)
		case "count":
			f.count, err = parseInt(val, 0, -1)
		case "error":
			f.errorKind = val
			if val != errorContextLength && val != errorContentFilter {
				err = fmt.Errorf("want %s or %s", errorContextLength, errorContentFilter)
			}
		case "delay":
			f.delay, err = caddy.ParseDuration(val)
			if err == nil && f.delay < 0 {
				err = fmt.Errorf("must not be negative")
			}
		}
		if err != nil {
			return f, fmt.Errorf("fault %s: bad %s value %q: %v", f.kind, key, val, err)
		}
	}

	if f.kind == faultListStatus && !strings.Contains(spec, "after=") {
		f.after = 0
	}
	if f.retryAfter >= 0 && f.retryAfterDate >= 0 {
		return f, fmt.Errorf("fault %s: retry_after and retry_after_date both set the Retry-After header; use only one", f.kind)
	}
	return f, nil
}

// parseConfigFault parses a fault spec from the handler's configuration,
// where a "name:" target prefix makes no sense.
func parseConfigFault(spec string) (fault, error) {
	kind, _, _ := strings.Cut(spec, ",")
	if strings.Contains(kind, ":") {
		return fault{}, fmt.Errorf("a name: prefix is only allowed in the fault header")
	}
	return parseFault(spec)
}

// parseInt parses an integer that must be at least lo
// and, unless hi is negative, at most hi.
func parseInt(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("not an integer")
	}
	if n < lo || (hi >= 0 && n > hi) {
		if hi < 0 {
			return 0, fmt.Errorf("must be at least %d", lo)
		}
		return 0, fmt.Errorf("must be between %d and %d", lo, hi)
	}
	return n, nil
}

// parseFaultHeader parses the value of the fault request header: fault
// specs separated by ";", each optionally prefixed by "name:" to target
// only the mock with that name.
func parseFaultHeader(value string) ([]fault, error) {
	var faults []fault
	for spec := range strings.SplitSeq(value, ";") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		var target string
		kind, _, _ := strings.Cut(spec, ",")
		if i := strings.IndexByte(kind, ':'); i >= 0 {
			target = strings.TrimSpace(spec[:i])
			if target == "" {
				return nil, fmt.Errorf("empty mock name in %q", spec)
			}
			spec = strings.TrimSpace(spec[i+1:])
		}
		f, err := parseFault(spec)
		if err != nil {
			return nil, err
		}
		f.target = target
		faults = append(faults, f)
	}
	return faults, nil
}

// faultPlan is the combined effect of the faults active for one request.
// When several faults of the same kind are active, the last one wins,
// so header faults override configured ones.
type faultPlan struct {
	status          *fault        // reply with an error status
	reset           bool          // abort before the response
	noAnswer        bool          // never answer
	firstTokenDelay time.Duration // extra wait before the first token
	cutAfter        int           // abort after this many content chunks; -1 = off
	cutMidAfter     int           // abort inside the next content chunk after this many; -1 = off
	stallAfter      int           // block after this many content chunks; -1 = off
	malformedAfter  int           // inject a broken event after this many content chunks; -1 = off
	noDone          bool          // leave out the stream terminator
	errorEventAfter int           // end with an error event after this many content chunks; -1 = off
}

// newFaultPlan combines faults into a plan.
func newFaultPlan(faults []fault) faultPlan {
	p := faultPlan{cutAfter: -1, cutMidAfter: -1, stallAfter: -1, malformedAfter: -1, errorEventAfter: -1}
	for i := range faults {
		f := &faults[i]
		switch f.kind {
		case faultStatus, faultListStatus:
			p.status = f
		case faultReset:
			p.reset = true
		case faultNoAnswer:
			p.noAnswer = true
		case faultSlowFirstToken:
			p.firstTokenDelay = f.delay
		case faultCut:
			p.cutAfter = f.after
		case faultCutMid:
			p.cutMidAfter = f.after
		case faultStall:
			p.stallAfter = f.after
		case faultMalformed:
			p.malformedAfter = f.after
		case faultNoDone:
			p.noDone = true
		case faultErrorEvent:
			p.errorEventAfter = f.after
		}
	}
	return p
}

// breaksBody reports whether the plan damages a non-streamed body.
func (p faultPlan) breaksBody() bool {
	return p.cutAfter >= 0 || p.cutMidAfter >= 0 || p.stallAfter >= 0 || p.malformedAfter >= 0 || p.errorEventAfter >= 0
}

// activeFaults returns the faults that apply to r: configured faults
// (honouring their count) followed by header faults addressed to this
// mock. Only inference requests advance the request counter, so that
// health checks on the models endpoint do not use up a failure burst;
// configured faults with a count never apply to other requests.
func (h *Handler) activeFaults(r *http.Request, ep endpoint) ([]fault, error) {
	counted := ep != endpointUnknown && ep != endpointModels
	var n, lists int64
	if counted {
		n = h.requests.Add(1)
	}
	if ep == endpointModels {
		lists = h.lists.Add(1)
	}
	// list_status applies to the models endpoint alone, once the first
	// `after` requests to it passed.
	listFault := func(f fault) bool {
		return ep == endpointModels && lists > int64(f.after)
	}

	var active []fault
	for _, f := range h.faults {
		if f.kind == faultListStatus {
			if listFault(f) {
				active = append(active, f)
			}
			continue
		}
		if f.count == 0 || (counted && n <= int64(f.count)) {
			active = append(active, f)
		}
	}

	values := r.Header.Values(h.FaultHeader)
	if len(values) == 0 {
		return active, nil
	}
	headerFaults, err := parseFaultHeader(strings.Join(values, ";"))
	if err != nil {
		return active, fmt.Errorf("invalid %s header: %v", h.FaultHeader, err)
	}
	for _, f := range headerFaults {
		if (f.target == "" || f.target == h.Name) && (f.kind != faultListStatus || listFault(f)) {
			active = append(active, f)
		}
	}
	return active, nil
}

// setRetryHeaders sets the retry hints requested by a status fault.
func (f *fault) setRetryHeaders(hdr http.Header) {
	if f.retryAfter >= 0 {
		hdr.Set("Retry-After", strconv.Itoa(f.retryAfter))
	}
	if f.retryAfterMS >= 0 {
		hdr.Set("retry-after-ms", strconv.Itoa(f.retryAfterMS))
	}
	if f.retryAfterDate >= 0 {
		at := time.Now().Add(time.Duration(f.retryAfterDate) * time.Second)
		hdr.Set("Retry-After", at.UTC().Format(http.TimeFormat))
	}
}

// midEvent is where cut_mid breaks an event: inside the first character
// of its data that takes several bytes in UTF-8 (after its first byte),
// else in the middle of its data line; never at the end of a line.
func midEvent(ev []byte) int {
	data := bytes.Index(ev, []byte("data:"))
	if data < 0 {
		return len(ev) / 2
	}
	for i := data; i < len(ev); i++ {
		if ev[i] >= 0xC0 {
			return i + 1
		}
	}
	end := bytes.IndexByte(ev[data:], '\n')
	if end < 0 {
		end = len(ev) - data
	}
	return data + end/2
}
