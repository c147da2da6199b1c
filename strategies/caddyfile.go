package strategies

import (
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// This file holds the Caddyfile helpers that the strategies'
// UnmarshalCaddyfile methods share.

// intArg parses the single argument of the current subdirective as a
// non-negative integer.
func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	v, err := strconv.Atoi(d.Val())
	if err != nil || v < 0 {
		return 0, d.Errf("invalid %s value '%s': want a non-negative integer", name, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return v, nil
}

// floatArg parses the single argument of the current subdirective as a
// finite number in [0, upper].
func floatArg(d *caddyfile.Dispenser, upper float64) (float64, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	v, err := strconv.ParseFloat(d.Val(), 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > upper {
		return 0, d.Errf("invalid %s value '%s': want a number from 0 to %g", name, d.Val(), upper)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return v, nil
}

// noOptions consumes a strategy that takes neither arguments nor a
// block.
func noOptions(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("unrecognized subdirective: %s", d.Val())
	}
	return nil
}
