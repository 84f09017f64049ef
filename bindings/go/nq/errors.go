package nq

import "github.com/libnq/libnq/bindings/go/nq/internal/nqraw"

// Error is a libnq error code.  Errors returned by this package are Error
// values (or a context's error), so errors.Is(err, nq.ErrClosed) works.
type Error int

// Error returns libnq's sentence for the code.
func (e Error) Error() string { return "nq: " + nqraw.Nq_strerror(int(e)) }

// Code returns the negative NQ_E* number.
func (e Error) Code() int { return int(e) }

// The errors of libnq (nq/nq.h names them NQ_E*).
var (
	ErrInvalid           error = Error(nqraw.NQ_EINVAL)
	ErrNoMemory          error = Error(nqraw.NQ_ENOMEM)
	ErrTimeout           error = Error(nqraw.NQ_ETIMEDOUT)
	ErrClosed            error = Error(nqraw.NQ_ECLOSED)
	ErrConnectionReset   error = Error(nqraw.NQ_ECONNRESET)
	ErrNoPeer            error = Error(nqraw.NQ_ENOPEER)
	ErrTLS               error = Error(nqraw.NQ_ETLS)
	ErrProtocol          error = Error(nqraw.NQ_EPROTO)
	ErrConnectionRefused error = Error(nqraw.NQ_ECONNREFUSED)
	ErrAddress           error = Error(nqraw.NQ_EADDR)
	ErrAddressInUse      error = Error(nqraw.NQ_EADDRINUSE)
	ErrNotSupported      error = Error(nqraw.NQ_ENOTSUP)
	ErrSystem            error = Error(nqraw.NQ_ESYS)
	ErrFull              error = Error(nqraw.NQ_EFULL)
	ErrPending           error = Error(nqraw.NQ_EPENDING)
	ErrReplaced          error = Error(nqraw.NQ_EREPLACED) // since libnq 1.1
	ErrCanceled          error = Error(nqraw.NQ_ECANCELED) // the put was withdrawn (Future.Cancel); since libnq 1.2
	ErrAuth              error = Error(nqraw.NQ_EAUTH)     // TLS credentials refused (TLS.ClientAuth); since libnq 1.3
)

// check turns a libnq result into nil or an Error.
func check(rc int) error {
	if rc >= 0 {
		return nil
	}
	return Error(rc)
}
