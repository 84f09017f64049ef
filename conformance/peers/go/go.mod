module libnq.test/conformance/peer

go 1.21

require github.com/libnq/libnq/bindings/go v0.0.0

replace github.com/libnq/libnq/bindings/go => ../../../bindings/go
