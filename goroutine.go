package llmroute

import (
	"errors"
	"net/http"
	"runtime/debug"

	"go.uber.org/zap"
)

// net/http (and so Caddy) recovers a handler's panic only in the
// request's own goroutine: a panic on any other goroutine ends the
// process, with every request in flight. The goroutines a request
// starts (a hedge's two calls, a consensus's votes and judges) run
// through spawn, which catches a panic there; the request's goroutine
// waits for all it started and raises the panic again (raise), where
// Caddy handles it as any handler's panic: http.ErrAbortHandler aborts
// the response, anything else is a bug that fails the request.

// errPanicked is the cause a request's other calls are cancelled with
// when one of its goroutines panicked.
var errPanicked = errors.New("another call of the request panicked")

// task is a function a request runs on a goroutine of its own.
type task struct {
	done   chan struct{}
	caught *caught // set before done is closed
}

// caught is a panic caught on a task's goroutine, with that goroutine's
// stack (the one the request's goroutine raises it from does not show
// where it happened).
type caught struct {
	value any
	stack []byte
}

// spawn runs f on a goroutine of its own. A panic in f is caught there,
// and then stop, if not nil, is called, so that the request's other
// calls end too; wait hands the panic to the request's goroutine.
func spawn(f func(), stop func()) *task {
	t := &task{done: make(chan struct{})}
	go func() {
		defer close(t.done)
		defer func() {
			if v := recover(); v != nil {
				t.caught = &caught{value: v, stack: debug.Stack()}
				if stop != nil {
					stop()
				}
			}
		}()
		f()
	}()
	return t
}

// wait waits for the task to end and returns its panic, if it had one.
func (t *task) wait() *caught {
	<-t.done
	return t.caught
}

// aborted reports whether the task ended with an abort panic
// (http.ErrAbortHandler: a response that broke after it started).
func (c *caught) aborted() bool { return c != nil && c.value == http.ErrAbortHandler }

// waitAll waits for every task, then raises the first panic among them
// (the others are logged).
func (h *Handler) waitAll(tasks []*task) {
	var first *caught
	for _, t := range tasks {
		if c := t.wait(); first == nil {
			first = c
		} else {
			h.logPanic(c)
		}
	}
	h.raise(first)
}

// raise panics again, in the calling goroutine, with the value of c, if
// not nil, logged first (logPanic).
func (h *Handler) raise(c *caught) {
	if c == nil {
		return
	}
	h.logPanic(c)
	panic(c.value)
}

// logPanic logs a panic other than an abort with the stack of the
// goroutine it happened on: a panic that is not raised (a request's
// second) leaves this line only.
func (h *Handler) logPanic(c *caught) {
	if c != nil && !c.aborted() {
		h.logger.Error("panic in a call of a request", zap.Any("panic", c.value), zap.ByteString("stack", c.stack))
	}
}
