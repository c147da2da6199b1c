// Package testcaddy runs a package's tests with a minimal Caddy config
// loaded, for tests that provision modules.
//
// Provisioning a provider loads a reverse_proxy, whose Provision calls
// ctx.App("events"). A bare caddy.NewContext(caddy.Context{...}) has no
// config behind it and ctx.App panics with a nil pointer dereference, so
// the tests derive their contexts from the active config instead
// (caddy.ActiveContext).
package testcaddy

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/goleak"
)

// config runs no servers and writes nothing to disk; the events app is
// loaded up front so that provisioning never adds apps concurrently.
const config = `{
	"admin": {"disabled": true, "config": {"persist": false}},
	"apps": {"events": {}}
}`

// running wraps testing.M so that the config runs while the tests run
// and is stopped before goleak looks for leftover goroutines.
type running struct{ m *testing.M }

func (r running) Run() int {
	if err := caddy.Load([]byte(config), true); err != nil {
		panic("loading the test config: " + err.Error())
	}
	code := r.m.Run()
	if err := caddy.Stop(); err != nil {
		panic("stopping caddy: " + err.Error())
	}
	return code
}

// Main runs the tests with the config loaded, then checks for leaked
// goroutines and exits. Call it from TestMain.
func Main(m *testing.M) {
	goleak.VerifyTestMain(running{m})
}

// Context returns a Caddy context derived from the running config; it is
// cancelled (and its modules cleaned up) when the test ends.
func Context(t testing.TB) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	t.Cleanup(cancel)
	return ctx
}
