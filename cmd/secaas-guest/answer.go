package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
)

// answerCmd is a test backdoor: it answers UDP datagrams to a port through
// a raw socket, so that no UDP socket is bound to the port (ss and the
// kernel's socket tables show nothing there), as packet- and raw-socket
// backdoors do. With --echo it also runs an ordinary UDP echo service on
// another port, for comparison.
func answerCmd(args []string) error {
	fs := flag.NewFlagSet("answer", flag.ExitOnError)
	port := fs.Int("port", 31337, "UDP port to answer on, through a raw socket")
	echo := fs.Int("echo", 0, "also run an ordinary UDP echo service on this port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *echo != 0 {
		c, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", *echo))
		if err != nil {
			return err
		}
		go func() {
			b := make([]byte, 2048)
			for {
				n, from, err := c.ReadFrom(b)
				if err != nil {
					return
				}
				c.WriteTo(b[:n], from)
			}
		}()
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	fmt.Printf("{\"pid\":%d,\"port\":%d,\"echo\":%d}\n", os.Getpid(), *port, *echo)
	os.Stdout.Sync()
	b := make([]byte, 65536)
	for {
		n, _, err := syscall.Recvfrom(fd, b, 0)
		if err != nil {
			return err
		}
		if n < 20 || b[0]>>4 != 4 {
			continue
		}
		ihl := int(b[0]&0x0f) * 4
		if n < ihl+8 || int(binary.BigEndian.Uint16(b[ihl+2:])) != *port {
			continue
		}
		sport := binary.BigEndian.Uint16(b[ihl:])
		payload := b[ihl+8 : n]
		reply := make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(reply[0:], uint16(*port))
		binary.BigEndian.PutUint16(reply[2:], sport)
		binary.BigEndian.PutUint16(reply[4:], uint16(len(reply)))
		copy(reply[8:], payload) // checksum 0: none, as IPv4 allows
		var to syscall.SockaddrInet4
		copy(to.Addr[:], b[12:16])
		syscall.Sendto(fd, reply, 0, &to)
	}
}
