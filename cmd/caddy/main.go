// Command caddy is Caddy with its standard modules, llm_route and the
// llm_mock provider (a development and example build: a production
// build with xcaddy leaves the mock out). Build it with
// `go build ./cmd/caddy`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-llm-route/llmroute"
	_ "github.com/caddy-llm-route/llmroute/mock"
)

func main() {
	caddycmd.Main()
}
