// Command secaasd is the secaas daemon. By default (--role all) it is the
// whole system for one host: REST API, store and the node agent for this
// host's Open vSwitch bridge, in one process. For many hosts one secaasd
// runs --role controller (API, store, an embedded NATS JetStream server)
// and every hypervisor host runs --role agent --bus nats://CONTROLLER:4222.
// Package daemon wires them.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"secaas/internal/cli"
	"secaas/internal/daemon"
	"secaas/internal/ovs"
	"secaas/internal/store"
)

func main() {
	var c daemon.Config
	var listen, bridge, tunnelIP string
	var reconcile time.Duration
	flag.StringVar(&c.Role, "role", "all", "all (one host: controller and agent), controller (API, store, bus) or agent (this hypervisor host)")
	flag.StringVar(&c.Node, "node", "", "this host's name in the fleet (default: the host name); ports whose inventory record names no host are on the controller's")
	flag.StringVar(&c.BusURL, "bus", "", "NATS URL of the bus (an agent: the controller's, e.g. nats://10.0.0.1:4222; a controller: an external NATS cluster instead of the embedded server)")
	flag.StringVar(&c.BusListen, "bus-listen", "", "where a controller's embedded NATS server listens (default 127.0.0.1:4222; all: set it to use NATS on one host too)")
	flag.StringVar(&c.BusTokenFile, "bus-token-file", "/var/lib/secaas/bus.token", "token that admits hosts to the bus (created with a random token if missing; copy it to every agent)")
	flag.StringVar(&tunnelIP, "tunnel-ip", "", "this host's VXLAN endpoint: the address the other hosts reach it at (unset: domains do not span hosts to or from it)")
	flag.StringVar(&c.ModelDir, "nad-models", "/var/lib/secaas/models", "directory of trained anomaly-detection models (secaas nad train) that NAD policies name")
	flag.StringVar(&c.KMonObject, "kmon-object", defaultKMonObject(), "the compiled syscall monitor injected into guests (make builds bin/kmon-monitor.o; empty: no syscall monitoring)")
	flag.StringVar(&listen, "listen", "127.0.0.1:8470", "API listen address")
	flag.StringVar(&c.DB, "db", "/var/lib/secaas/secaas.db", "the store: a SQLite database path, or a PostgreSQL URL (postgres://USER@HOST/DB; then give --data-dir)")
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
	if tunnelIP != "" {
		a, err := netip.ParseAddr(tunnelIP)
		if err != nil {
			log.Error("secaasd failed", "err", fmt.Errorf("--tunnel-ip: %w", err))
			os.Exit(2)
		}
		c.TunnelIP = a
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(ctx, c)
	if err != nil {
		log.Error("secaasd failed", "err", err)
		os.Exit(1)
	}
	defer d.Close()
	log.Info("secaasd starting", "role", c.Role, "node", d.Node, "addr", listen, "bridge", bridge, "db", store.Redact(c.DB), "admin_token_file", c.TokenFile, "bus", d.BusURL)
	if err := d.Serve(ctx, listen, reconcile); err != nil {
		log.Error("secaasd failed", "err", err)
		d.Close()
		os.Exit(1)
	}
}

// defaultKMonObject is the syscall monitor beside this executable (make
// builds it there), or the packaged one.
func defaultKMonObject() string {
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), "kmon-monitor.o"); fileExists(p) {
			return p
		}
	}
	if p := "/usr/lib/secaas/kmon-monitor.o"; fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
