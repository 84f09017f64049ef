package nqraw

// #include <stddef.h>
// #include <stdint.h>
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// SecretFunc gives the secret of one connection attempt (see
// nq_opts_set_secret_fn); an error fails the attempt with NQ_EAUTH.
type SecretFunc func() (string, error)

// nqGoSecret is the secret callback of Opts.Set_secret (nq.i's
// nqb_secret_call calls it, on whichever thread connects): it calls the
// SecretFunc behind handle and copies its secret into buf.  An error, a
// panic or a secret longer than size fails the attempt.
//
//export nqGoSecret
func nqGoSecret(handle C.uintptr_t, buf *C.char, size C.size_t, n *C.size_t) (rc C.int) {
	rc = C.int(NQ_EAUTH)
	defer func() {
		if recover() != nil {
			rc = C.int(NQ_EAUTH)
		}
	}()
	fn, ok := cgo.Handle(handle).Value().(SecretFunc)
	if !ok {
		return rc
	}
	secret, err := fn()
	if err != nil || len(secret) > int(size) {
		return rc
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(secret)), secret)
	*n = C.size_t(len(secret))
	return C.int(NQ_OK)
}
