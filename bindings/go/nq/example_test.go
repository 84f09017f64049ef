package nq_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/libnq/libnq/bindings/go/nq"
)

// A server and a client exchange one message each.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	server, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	port, _ := server.LocalPort()

	client, err := nq.Open(nq.TCP, nq.Client, &nq.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Put([]byte("Hello, Server!")).Wait(ctx); err != nil {
		log.Fatal(err)
	}

	msg, err := server.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("server got %q\n", msg.Data)
	server.Put([]byte("Hello, Client!"), msg.Peer)

	reply, err := client.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("client got %q\n", reply.Data)

	client.Close()
	server.Close()
	// Output:
	// server got "Hello, Server!"
	// client got "Hello, Client!"
}
