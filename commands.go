package llmroute

// The `caddy llm-route` command (offline eval and train) is registered
// by package learn; importing it here puts it in every build that has
// the module, xcaddy builds included.
import _ "github.com/caddy-llm-route/llmroute/learn"
