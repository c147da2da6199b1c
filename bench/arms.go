package bench

import (
	"fmt"
	"regexp"
	"strings"
)

// ArmKind is what serves an arm's requests.
type ArmKind string

// The arms.
const (
	ArmDirect  ArmKind = "D" // the mock itself
	ArmCaddy   ArmKind = "C" // Caddy with a bare reverse_proxy to the mock
	ArmRoute   ArmKind = "R" // Caddy with llm_route in front of the mock
	ArmPortkey ArmKind = "P" // Portkey's gateway in front of the mock
)

// Arm is one configuration under test.
type Arm struct {
	Kind     ArmKind
	Strategy string // R only: the strategy of the route the requests name
}

// Name is the arm's label in tables: D, C, P or R:<strategy>.
func (a Arm) Name() string {
	if a.Kind == ArmRoute {
		return "R:" + a.Strategy
	}
	return string(a.Kind)
}

// model is the model field the arm's requests carry: a route for R, a
// plain model name (passed through to the mock) otherwise.
func (a Arm) model() string {
	if a.Kind == ArmRoute {
		return "bench-" + a.Strategy
	}
	return "bench-small"
}

var strategyName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// ParseArms reads a comma-separated list such as "D,C,R:fallback,P"; "R"
// alone stands for every strategy in [DefaultStrategies].
func ParseArms(s string) ([]Arm, error) {
	var arms []Arm
	seen := map[string]bool{}
	add := func(a Arm) {
		if !seen[a.Name()] {
			seen[a.Name()] = true
			arms = append(arms, a)
		}
	}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
		case f == "D" || f == "C" || f == "P":
			add(Arm{Kind: ArmKind(f)})
		case f == "R":
			for _, st := range DefaultStrategies {
				add(Arm{Kind: ArmRoute, Strategy: st})
			}
		case strings.HasPrefix(f, "R:"):
			st := f[2:]
			if !strategyName.MatchString(st) {
				return nil, fmt.Errorf("arm %q: not a strategy name", f)
			}
			add(Arm{Kind: ArmRoute, Strategy: st})
		default:
			return nil, fmt.Errorf("unknown arm %q (want D, C, R, R:<strategy> or P)", f)
		}
	}
	if len(arms) == 0 {
		return nil, fmt.Errorf("no arms in %q", s)
	}
	return arms, nil
}

// DefaultStrategies are the representative strategies of the R arms.
var DefaultStrategies = []string{"fallback", "cheapest", "rules", "difficulty"}

// routeBodies configures the R arms' routes. A strategy not listed here
// gets a route over both models with its default configuration. "quota"
// is the fallback route with limits that never deny (rpm, tpm, a daily
// request count and a daily budget, kept in memory): R:quota against
// R:fallback is what admission costs.
//
// The rules route holds ten rules that all miss the harness's prompts (its
// filler text has none of their keywords and is longer than the token
// bound), so every rule is evaluated and the default decides.
var routeBodies = map[string]string{
	"fallback": `
			models small large
			strategy fallback`,
	"quota": `
			models small large
			strategy fallback
			rpm 1000000000
			tpm 1000000000000
			daily_requests 1000000000000
			budget 1000000000 day`,
	"cheapest": `
			models large small
			strategy cheapest`,
	"rules": `
			models small large
			strategy rules {
				rule greeting {
					keywords hello thanks 你好 谢谢
					max_tokens 20
					models small
				}
				rule billing {
					keywords refund invoice chargeback
					models small
				}
				rule infra {
					keywords kubernetes terraform
					models large
				}
				rule legal {
					keywords lawsuit indemnity
					models large
				}
				rule medical {
					keywords diagnosis dosage
					models large
				}
				rule security {
					keywords password exploit
					models large
				}
				rule poetry {
					keywords sonnet haiku
					models small
				}
				rule code {
					keywords regex sql golang
					models large
				}
				rule tools {
					tools
					models large
				}
				rule translate {
					keywords translate 翻译
					models small
				}
				default large
			}`,
	"difficulty": `
			models small large
			strategy difficulty {
				tier 0 small
				tier 0.4 large
			}`,
}

// caddyfile renders the Caddy configuration of a C or R arm: admin API and
// site on loopback ports, the mock as the only upstream. R arms hold every
// route, so one configuration serves them all; the request's model picks
// the route. An R arm with a twinPort also serves, on that port, the C
// arm's bare reverse_proxy to the same mock: its twin, in the same process.
func caddyfile(a Arm, adminPort, sitePort, twinPort int, mockAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
`, adminPort)
	if a.Kind == ArmCaddy || twinPort > 0 {
		port := sitePort
		if a.Kind == ArmRoute {
			port = twinPort
		}
		fmt.Fprintf(&b, "\nhttp://:%d {\n\tbind 127.0.0.1\n\treverse_proxy %s\n}\n", port, mockAddr)
		if a.Kind == ArmCaddy {
			return b.String()
		}
	}
	fmt.Fprintf(&b, "\nhttp://:%d {\n\tbind 127.0.0.1\n", sitePort)
	fmt.Fprintf(&b, `	llm_route {
		provider mock http://%s
		model small {
			provider mock
			upstream_name bench-small
			price 0.15 0.60
			quality 0.62
			context 128000
		}
		model large {
			provider mock
			upstream_name bench-large
			price 2.50 10.00
			quality 0.88
			context 128000
		}
`, mockAddr)
	fmt.Fprintf(&b, "\t\troute %s {%s\n\t\t}\n", a.model(), routeBody(a.Strategy))
	b.WriteString("\t}\n}\n")
	return b.String()
}

func routeBody(strategy string) string {
	if s, ok := routeBodies[strategy]; ok {
		return s
	}
	return "\n\t\t\tmodels small large\n\t\t\tstrategy " + strategy
}

// The filler of the prompts: plain English with none of the rules'
// keywords, in any case, as a substring.
var fillerWords = strings.Fields(`the garden river morning light travels across quiet
fields while a small boat drifts toward distant towns and people gather near
old stone walls to share bread stories about seasons weather music children
bridges lanterns orchards market evening harbor mountain valley winter autumn`)

// RequestBody returns a chat completions request of exactly size bytes
// (or the smallest possible, if size is smaller): a system message and a
// user message of filler text.
func RequestBody(model string, size int, stream bool) []byte {
	head := fmt.Sprintf(`{"model":%q,"stream":%t,"max_tokens":256,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"`, model, stream)
	const tail = `"}]}`
	n := size - len(head) - len(tail)
	var fill strings.Builder
	for i := 0; fill.Len() < n; i++ {
		if i > 0 {
			fill.WriteByte(' ')
		}
		fill.WriteString(fillerWords[i%len(fillerWords)])
	}
	f := fill.String()
	if n >= 0 && len(f) > n {
		f = f[:n]
	}
	if n > 0 && strings.HasSuffix(f, " ") {
		f = f[:n-1] + "."
	}
	return []byte(head + f + tail)
}
