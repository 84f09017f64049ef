// An echo over TCP with the installed Go source
// (golang-github-libnq-libnq-dev), built as the main package of a module
// outside the source tree: a server on 127.0.0.1, on a port the system
// picks, sends its client's message back. Prints "echo TEXT" with what
// came back.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/libnq/libnq/bindings/go/nq"
)

func main() {
	text := "hello"
	if len(os.Args) > 1 {
		text = os.Args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	server, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()
	port, err := server.LocalPort()
	if err != nil {
		log.Fatal(err)
	}
	client, err := nq.Open(nq.TCP, nq.Client, &nq.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	if err := client.Put([]byte(text)).Wait(ctx); err != nil {
		log.Fatal(err)
	}
	request, err := server.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := server.Put(request.Data, request.Peer).Wait(ctx); err != nil {
		log.Fatal(err)
	}
	reply, err := client.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("echo %s\n", reply.Data)
}
