// Package nqraw is the SWIG-generated layer under package nq: libnq's
// constants and the Opts, Comm, Msg and Completions classes of
// bindings/nq.i.  The go tool generates it from nqraw.swigcxx, so swig must
// be installed to build it.
//
// nq.i and nq/nq.h are found in this repository; libnq itself through the
// linker's search path or CGO_LDFLAGS (for a build tree:
// CGO_LDFLAGS="-L$BUILD -Wl,-rpath,$BUILD").  The go tool does not see
// nq.i as an input of its build cache: after changing nq.i, change
// CGO_CPPFLAGS too (the CMake tests pass nq.i's hash there) or clean the
// cache.
package nqraw

// #cgo CPPFLAGS: -I${SRCDIR}/../../.. -I${SRCDIR}/../../../../abi/include
// #cgo CXXFLAGS: -std=c++11 -Wno-unused-parameter
// #cgo LDFLAGS: -lnq
import "C"
