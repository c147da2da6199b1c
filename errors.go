package llmroute

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/translate"
)

// errorBody builds an error body in the client's API shape: Anthropic's
// for the Messages API, OpenAI's otherwise. Both carry message, type and
// code.
func errorBody(endpoint string, status int, code, msg string) []byte {
	type detail struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	}
	d := detail{Message: msg, Type: translate.ErrorType(status), Code: code}
	var b []byte
	if translate.IsMessages(endpoint) {
		b, _ = json.Marshal(struct {
			Type  string `json:"type"`
			Error detail `json:"error"`
		}{"error", d})
	} else {
		b, _ = json.Marshal(struct {
			Error detail `json:"error"`
		}{d})
	}
	return b
}

// writeError answers with an error body in the client's API shape.
func writeError(w http.ResponseWriter, endpoint string, status int, code, msg string) {
	noteError(w, code)
	writeJSON(w, status, errorBody(endpoint, status, code, msg))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// upstreamErrorBody returns an upstream error body fit for the client:
// the body itself when it is a JSON object with an "error" member, else
// an error body in the client's shape carrying the upstream's text.
func upstreamErrorBody(endpoint string, status int, body []byte) []byte {
	if gjson.ValidBytes(body) {
		if r := gjson.ParseBytes(body); r.IsObject() && r.Get("error").Exists() {
			return body
		}
	}
	msg := truncate(string(body), 512)
	if msg == "" {
		msg = http.StatusText(status)
	}
	return errorBody(endpoint, status, "upstream_error", "upstream error: "+msg)
}
