// Command caddy is Caddy with its standard modules and llm_route
// (including the llm_mock provider). Build it with `go build ./cmd/caddy`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-llm-route/llmroute"
)

func main() {
	caddycmd.Main()
}
