package nq

import "context"

// Future is the outcome of one Put: it completes when every peer's copy has
// been handed to the transport, or fails (ErrConnectionReset, ErrNoPeer,
// ErrClosed, ErrTLS, ...).
type Future struct {
	done chan struct{}
	err  error
}

func newFuture() *Future { return &Future{done: make(chan struct{})} }

// complete is called exactly once.
func (f *Future) complete(err error) {
	f.err = err
	close(f.done)
}

// Wait blocks until the put completes or ctx ends, and returns the put's
// error (nil on success) or ctx's.
func (f *Future) Wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		select {
		case <-f.done:
			return f.err
		default:
			return ctx.Err()
		}
	}
}

// Done is closed when the put has completed.
func (f *Future) Done() <-chan struct{} { return f.done }

// Err returns the put's error once Done is closed (nil on success), and
// ErrPending before.
func (f *Future) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return ErrPending
	}
}
