// Command secaas is the secaas command-line tool: offline policy tools, the
// namespace lab, benchmarks and a client of the secaasd API.
package main

import (
	"context"
	"os"
	"os/signal"

	"secaas/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := cli.Main(ctx, &cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}
