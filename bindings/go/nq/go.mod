module github.com/libnq/libnq/bindings/go/nq

go 1.21
