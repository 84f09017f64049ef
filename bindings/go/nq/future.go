package nq

import "context"

// Future is the outcome of one Put: it completes when every peer's copy has
// been handed to the transport, or fails (ErrConnectionReset, ErrNoPeer,
// ErrClosed, ErrTLS, ErrCanceled after Cancel, ...).
type Future struct {
	done chan struct{}
	err  error

	// The put's communicator and token, for Cancel (nil c: a put that
	// failed at once).  Holding c keeps it, and libnq's handle, alive
	// while Cancel may still be called.
	c     *Communicator
	token int64
}

func newFuture(c *Communicator, token int64) *Future {
	return &Future{done: make(chan struct{}), c: c, token: token}
}

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

// Cancel withdraws the put (libnq >= 1.2): every copy of it that has not
// started on the wire is taken out of its queue and never reaches its
// peer; a copy partly or wholly written is finished as usual.  It returns
// true when any copy was withdrawn: the Future then completes with
// ErrCanceled once the copies that had started are done (a put to several
// peers still reaches those), and until then their data stays pinned and
// must not be modified.  It returns false when nothing changed: every copy
// had started, the put has completed (its result stays), the communicator
// is closed, or libnq could not look (out of memory).  It waits briefly for
// the communicator's I/O threads.  Safe for concurrent use.
func (f *Future) Cancel() bool {
	select {
	case <-f.done:
		return false
	default:
	}
	if f.c == nil {
		return false
	}
	return f.c.cancel(f.token)
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
