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
// integer into dst.
func intArg(d *caddyfile.Dispenser, dst *int) error {
	name := d.Val()
	var arg string
	if !d.AllArgs(&arg) {
		return d.ArgErr()
	}
	v, err := strconv.Atoi(arg)
	if err != nil {
		return d.Errf("invalid %s value '%s': want an integer", name, arg)
	}
	*dst = v
	return nil
}

// floatArg parses the single argument of the current subdirective as a
// number into the optional setting dst.
func floatArg(d *caddyfile.Dispenser, dst **float64) error {
	name := d.Val()
	var arg string
	if !d.AllArgs(&arg) {
		return d.ArgErr()
	}
	v, err := strconv.ParseFloat(arg, 64)
	if err != nil {
		return d.Errf("invalid %s value '%s': want a number", name, arg)
	}
	*dst = &v
	return nil
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
