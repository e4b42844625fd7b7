// Command secaasd is the secaas daemon: REST API, store and the node agent
// for this host's Open vSwitch bridge, in one process (package daemon
// wires them).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"secaas/internal/cli"
	"secaas/internal/daemon"
	"secaas/internal/ovs"
)

func main() {
	var c daemon.Config
	var listen, bridge string
	var reconcile time.Duration
	flag.StringVar(&listen, "listen", "127.0.0.1:8470", "API listen address")
	flag.StringVar(&c.DB, "db", "/var/lib/secaas/secaas.db", "SQLite database path")
	flag.StringVar(&bridge, "bridge", "secaas0", "Open vSwitch bridge to enforce tenant domains on")
	flag.StringVar(&c.DataDir, "data-dir", "", "per-VM state (HyperAV sectors, quarantine) and the node's clamd (default: DB's directory/data)")
	flag.StringVar(&c.Signatures, "signatures", "", "directory of extra .ndb/.hdb/.yar signatures for clamd")
	flag.StringVar(&c.Hashes, "hashes", "", "SHA-256 list of known-bad files (sha256sum format) for HyperAV's hashlist engine")
	flag.StringVar(&c.TokenFile, "admin-token-file", "/var/lib/secaas/admin.token", "admin API token file (created with a random token if missing)")
	flag.StringVar(&c.ImageRoot, "image-root", "/var/lib/secaas/images", "VM disk images (host inventory) must lie beneath this directory")
	flag.StringVar(&c.RunRoot, "run-root", "/run/secaas", "VM sockets (QMP, HyperAV front, guest port; host inventory) must lie beneath this directory")
	flag.StringVar(&c.ShmRoot, "shm-root", "/dev/shm", "guest RAM files (host inventory) must lie beneath this directory")
	flag.DurationVar(&c.EventMaxAge, "events-max-age", 30*24*time.Hour, "event retention: events older than this go (0: keep by age)")
	flag.IntVar(&c.EventMaxCount, "events-max-count", 1_000_000, "event retention: keep at most this many, the newest (0: no limit)")
	flag.DurationVar(&reconcile, "reconcile", 2*time.Second, "interval of the flow reconcile loop (it also runs when the flow table changes)")
	debug := flag.Bool("debug", false, "debug logging")
	version := flag.Bool("version", false, "print the version of this build and exit")
	flag.Parse()
	if *version {
		fmt.Println("secaasd " + cli.Version())
		return
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	c.Log, c.Bridge = log, ovs.NewBridge(bridge)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(ctx, c)
	if err != nil {
		log.Error("secaasd failed", "err", err)
		os.Exit(1)
	}
	defer d.Close()
	log.Info("secaasd starting", "addr", listen, "bridge", bridge, "db", c.DB, "admin_token_file", c.TokenFile)
	if err := d.Serve(ctx, listen, reconcile); err != nil {
		log.Error("secaasd failed", "err", err)
		d.Close()
		os.Exit(1)
	}
}
