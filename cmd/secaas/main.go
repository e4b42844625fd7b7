// Command secaas is the secaas command-line tool: offline policy tools, the
// namespace lab, benchmarks and a client of the secaasd API.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"secaas/internal/cli"
)

// main cancels the command's context on Ctrl-C or SIGTERM, so that long
// commands (benchmarks, the lab) stop the guests and processes they started.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, &cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Stdin: os.Stdin}, os.Args[1:])
	stop()
	os.Exit(code)
}
