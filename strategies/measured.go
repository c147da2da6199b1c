package strategies

import (
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The strategies that rank by a live measurement (lowest_latency,
// highest_throughput) share their settings: min_samples, before which a
// candidate is cold and tried first, and explore, the chance that a
// random other candidate is put first.

// provisionExploration sets the defaults of the shared settings.
func provisionExploration(minSamples *int, explore **float64) {
	if *minSamples == 0 {
		*minSamples = DefaultMinSamples
	}
	if *explore == nil {
		v := DefaultExplore
		*explore = &v
	}
}

// validateExploration checks the shared settings of strategy name.
func validateExploration(name string, minSamples int, explore *float64) error {
	if minSamples < 0 {
		return fmt.Errorf("%s: min_samples must not be negative, got %d", name, minSamples)
	}
	return checkRange(name+": explore", explore, 1)
}

// unmarshalExploration reads a measured strategy's Caddyfile block:
//
//	<name> {
//		min_samples <n>
//		explore     <probability>
//	}
func unmarshalExploration(d *caddyfile.Dispenser, minSamples *int, explore **float64) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "min_samples":
			v, err := intArg(d)
			if err != nil {
				return err
			}
			*minSamples = v
		case "explore":
			v, err := floatArg(d, 1)
			if err != nil {
				return err
			}
			*explore = &v
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}
