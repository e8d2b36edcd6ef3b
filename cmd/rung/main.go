// Command rung runs many tenants' workloads with exactly enough isolation.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"rung.dev/rung/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
