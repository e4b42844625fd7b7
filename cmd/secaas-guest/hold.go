package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

// Held is what "secaas-guest hold" holds, for memory monitoring tests to
// compare with what the host reads from guest memory.
type Held struct {
	PID     int            `json:"pid"`
	File    string         `json:"file"`
	Listen  map[string]int `json:"listen"` // tcp4, tcp6 (MPTCP), udp4, udp6 -> port
	Unix    string         `json:"unix"`   // a listening unix stream socket
	Conn    [2]int         `json:"conn"`   // an established tcp4 connection: client port, server port
	Started time.Time      `json:"started"`
}

// holdCmd opens a file, listeners of every kind and one established
// connection, prints what it holds as JSON and keeps them until killed.
func holdCmd(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	file := fs.String("file", "/tmp/secaas-held", "file to create and keep open")
	sock := fs.String("unix", "/tmp/secaas-held.sock", "unix socket to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Create(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := Held{PID: os.Getpid(), File: *file, Listen: map[string]int{}, Unix: *sock, Started: time.Now()}
	var keep []any
	for _, l := range []struct{ name, net, addr string }{
		{"tcp4", "tcp4", "127.0.0.1:0"}, {"tcp6", "tcp6", "[::1]:0"}, {"udp4", "udp4", "127.0.0.1:0"}, {"udp6", "udp6", "[::1]:0"},
	} {
		if l.net[:3] == "tcp" {
			// Go listens with MPTCP where the kernel has it: keep that
			// for IPv6, plain TCP for IPv4, so that both show.
			var lc net.ListenConfig
			lc.SetMultipathTCP(l.net == "tcp6")
			ln, err := lc.Listen(context.Background(), l.net, l.addr)
			if err != nil {
				return err
			}
			keep = append(keep, ln)
			h.Listen[l.name] = ln.Addr().(*net.TCPAddr).Port
			continue
		}
		c, err := net.ListenPacket(l.net, l.addr)
		if err != nil {
			return err
		}
		keep = append(keep, c)
		h.Listen[l.name] = c.LocalAddr().(*net.UDPAddr).Port
	}
	os.Remove(*sock)
	ul, err := net.Listen("unix", *sock)
	if err != nil {
		return err
	}
	keep = append(keep, ul)
	// One established connection, both ends held by this process.
	srv, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	client, err := net.Dial("tcp4", srv.Addr().String())
	if err != nil {
		return err
	}
	server, err := srv.Accept()
	if err != nil {
		return err
	}
	srv.Close()
	keep = append(keep, client, server)
	h.Conn = [2]int{client.LocalAddr().(*net.TCPAddr).Port, client.RemoteAddr().(*net.TCPAddr).Port}
	b, _ := json.Marshal(h)
	fmt.Println(string(b))
	os.Stdout.Sync()
	for {
		time.Sleep(time.Hour)
		_ = keep
	}
}
