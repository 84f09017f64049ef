module github.com/libnq/libnq/bindings/go

go 1.21
