module libnq.test/smoke/goclient

go 1.21

require github.com/libnq/libnq/bindings/go/nq v0.0.0

replace github.com/libnq/libnq/bindings/go/nq => ../../../bindings/go/nq
