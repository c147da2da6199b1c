package strategies

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// This file holds the Caddyfile helpers that the strategies'
// UnmarshalCaddyfile methods share.
//
// The parsers check syntax only: argument counts, that a number parses
// as a number, known subdirectives. Whether a value is allowed is for
// the strategy's Validate to say, so that a JSON config gets the same
// checks.

// intArg parses the single argument of the current subdirective as an
// integer.
func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	v, err := strconv.Atoi(d.Val())
	if err != nil {
		return 0, d.Errf("invalid %s value '%s': want an integer", name, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return v, nil
}

// floatArg parses the single argument of the current subdirective as a
// number.
func floatArg(d *caddyfile.Dispenser) (float64, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	v, err := strconv.ParseFloat(d.Val(), 64)
	if err != nil {
		return 0, d.Errf("invalid %s value '%s': want a number", name, d.Val())
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
