// The Go client of the mixed-language smoke test: greets the server at
// 127.0.0.1:PORT and prints the two messages it expects back.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/libnq/libnq/bindings/go/nq"
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "go client:", err)
		os.Exit(1)
	}
}

func run(port string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := nq.Open(nq.TCP, nq.Client, &nq.Options{Addr: "127.0.0.1:" + port})
	if err != nil {
		return err
	}
	if err := c.Put([]byte("hello from go")).Wait(ctx); err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		m, err := c.Get(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("go client got %q\n", m.Data)
	}
	return c.Close()
}
