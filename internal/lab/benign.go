package lab

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Benign profiles of the traffic lab.
const (
	// BenignVaried: hundreds of clients with Zipf-like popularity at
	// different hop counts and OS defaults (TTLs 64, 128, 255 minus hops),
	// HTTP with varied object sizes, 404s and keep-alive, DNS over UDP and
	// TCP with NXDOMAIN, SMTP, POP3, SSH logins (real SSH), long slow
	// downloads beside short sessions, on a compressed daily cycle with
	// autocorrelated noise.
	BenignVaried = "varied"
	// BenignPaper: the first lab (32 clients, 8 TTLs, four services),
	// kept to re-run the documented Table 5 captures.
	BenignPaper = "paper"
)

// Lab credentials (benign SSH and POP3 logins; the brute force guesses).
const (
	labUser     = "ops"
	labPassword = "correct-horse"
)

// dnsNames are the names the lab's DNS server knows; clients ask for them
// mostly, and for made-up ones (NXDOMAIN) sometimes.
var dnsNames = []string{"www.lab", "mail.lab", "pop.lab", "api.lab", "cdn.lab", "ssh.lab", "intranet.lab", "wiki.lab"}

// clientTTL draws a namespace's TTL: an OS default (64 for Linux and
// macOS, 128 for Windows, 255 for network gear) minus 0-20 hops.
func clientTTL(r *mrand.Rand) int {
	base := 64
	switch p := r.Float64(); {
	case p < 0.3:
		base = 128
	case p < 0.4:
		base = 255
	}
	return base - r.IntN(21)
}

// popularity picks client indexes with a Zipf-like law (a few clients make
// most sessions) over a seeded permutation, so that popular clients sit
// in different namespaces.
type popularity struct {
	z    *mrand.Zipf
	perm []int
}

func newPopularity(r *mrand.Rand, n int) *popularity {
	return &popularity{z: mrand.NewZipf(r, 1.1, 2, uint64(n-1)), perm: r.Perm(n)}
}

func (p *popularity) pick() int { return p.perm[p.z.Uint64()] }

// arNoise is an AR(1) process in log-rate, stepped once per second of
// elapsed time: x = 0.95 x + 0.25 N(0,1).
type arNoise struct {
	x    float64
	last time.Duration
}

func (a *arNoise) at(r *mrand.Rand, el time.Duration) float64 {
	for ; a.last+time.Second <= el; a.last += time.Second {
		a.x = 0.95*a.x + 0.25*r.NormFloat64()
	}
	return math.Exp(a.x)
}

// variedServices starts the servers the varied profile needs beside the
// paper's: SSH on 22 and DNS over TCP on 53 (the UDP DNS and HTTP are
// shared). They stop when done closes.
func (l *trafficLab) variedServices(done <-chan struct{}, wg *sync.WaitGroup) error {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return err
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		if c.User() == labUser && string(pw) == labPassword {
			return nil, nil
		}
		return nil, errors.New("denied")
	}, MaxAuthTries: 3}
	cfg.AddHostKey(signer)
	sshLn, err := l.server.ListenTCP(22)
	if err != nil {
		return err
	}
	dnsLn, err := l.server.ListenTCP(53)
	if err != nil {
		sshLn.Close()
		return err
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		serveConns(sshLn, 3*time.Minute, func(c net.Conn) { serveSSH(c, cfg) })
	}()
	go func() {
		defer wg.Done()
		serveConns(dnsLn, time.Minute, serveDNSTCP)
	}()
	go func() {
		defer wg.Done()
		<-done
		sshLn.Close()
		dnsLn.Close()
	}()
	return nil
}

// serveConns accepts until ln closes, each connection in its own
// goroutine with a deadline, and waits for them.
func serveConns(ln net.Listener, deadline time.Duration, fn func(net.Conn)) {
	var cw sync.WaitGroup
	defer cw.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		cw.Add(1)
		go func() {
			defer cw.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(deadline))
			fn(c)
		}()
	}
}

// serveSSH runs one SSH connection: exec requests get a line of output.
func serveSSH(c net.Conn, cfg *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, in, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range in {
				if req.Type != "exec" {
					req.Reply(false, nil)
					continue
				}
				req.Reply(true, nil)
				fmt.Fprintf(ch, " %s up 12 days,  3 users,  load average: 0.%02d\n", time.Now().Format("15:04:05"), time.Now().Nanosecond()%100)
				ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, 0))
				return
			}
		}()
	}
}

// dnsAnswer builds the reply to a DNS query: an A record for a known
// name, NXDOMAIN (rcode 3) otherwise, FORMERR for what is not a query. It
// returns nil when q is not DNS at all (the paper profile's clients send
// random bytes and expect them back).
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	// the question: labels, then type and class
	var name []string
	p := 12
	for {
		if p >= len(q) {
			return nil
		}
		n := int(q[p])
		p++
		if n == 0 {
			break
		}
		if n > 63 || p+n > len(q) {
			return nil
		}
		name = append(name, string(q[p:p+n]))
		p += n
	}
	if p+4 > len(q) {
		return nil
	}
	qEnd := p + 4
	r := append([]byte(nil), q[:qEnd]...)
	r[2] = 0x81 | q[2]&0x01 // response, recursion desired copied
	r[3] = 0x80             // recursion available, rcode 0
	binary.BigEndian.PutUint16(r[6:], 0)
	binary.BigEndian.PutUint16(r[8:], 0)
	binary.BigEndian.PutUint16(r[10:], 0)
	known := false
	full := strings.ToLower(strings.Join(name, "."))
	for _, n := range dnsNames {
		known = known || n == full
	}
	if !known {
		r[3] |= 3 // NXDOMAIN
		return r
	}
	binary.BigEndian.PutUint16(r[6:], 1)
	ip := [4]byte{10, 50, 0, byte(10 + len(full)%5)}
	r = append(r, 0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4)
	return append(r, ip[:]...)
}

// dnsQuery builds a query for name with id.
func dnsQuery(id uint16, name string) []byte {
	q := binary.BigEndian.AppendUint16(nil, id)
	q = append(q, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

// serveDNSTCP answers length-prefixed DNS queries on one connection.
func serveDNSTCP(c net.Conn) {
	rd := bufio.NewReader(c)
	for {
		var n uint16
		if err := binary.Read(rd, binary.BigEndian, &n); err != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(rd, q); err != nil {
			return
		}
		a := dnsAnswer(q)
		if a == nil {
			return
		}
		c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(a))))
		c.Write(a)
	}
}

// httpHandler serves the paper profile's /?n=SIZE and the varied
// profile's /obj/SIZE, /stream?kbps=K&s=SECONDS (a slow long download)
// and 404 for anything else.
func httpHandler(page string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			io.WriteString(w, page[:min(max(n, 100), len(page))])
		case strings.HasPrefix(r.URL.Path, "/obj/"):
			n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/obj/"))
			if err != nil || n < 0 || n > 4<<20 {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(n))
			for n > 0 {
				k := min(n, len(page))
				io.WriteString(w, page[:k])
				n -= k
			}
		case r.URL.Path == "/stream":
			kbps, _ := strconv.Atoi(r.URL.Query().Get("kbps"))
			secs, _ := strconv.Atoi(r.URL.Query().Get("s"))
			kbps, secs = min(max(kbps, 1), 100), min(max(secs, 1), 180)
			fl, _ := w.(http.Flusher)
			for i := 0; i < secs*4; i++ {
				if _, err := io.WriteString(w, page[:min(kbps*1024/4, len(page))]); err != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		default:
			http.NotFound(w, r)
		}
	})
}

// variedSession runs one benign session of the varied profile from
// client i; long reports a long-lived session (the caller bounds them).
func (l *trafficLab) variedSession(r *mrand.Rand, i int, long bool) error {
	h, ip := l.owner[i], l.ips[i]
	dial := func(port int, timeout time.Duration) (net.Conn, error) {
		var c net.Conn
		err := h.Do(func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: timeout}
			c, err = d.Dial("tcp4", netip.AddrPortFrom(ServerIP, uint16(port)).String())
			return err
		})
		return c, err
	}
	if long {
		c, err := dial(80, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		secs := 20 + r.IntN(100)
		c.SetDeadline(time.Now().Add(time.Duration(secs+10) * time.Second))
		fmt.Fprintf(c, "GET /stream?kbps=%d&s=%d HTTP/1.0\r\nHost: www.lab\r\n\r\n", 2+r.IntN(30), secs)
		_, err = io.Copy(io.Discard, c)
		return err
	}
	switch k := r.Float64(); {
	case k < 0.42: // HTTP: 1-5 requests on one connection, varied sizes, some 404
		c, err := dial(80, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		rd := bufio.NewReader(c)
		n := 1 + r.IntN(5)
		for j := 0; j < n; j++ {
			path := fmt.Sprintf("/obj/%d", int(math.Min(400000, math.Exp(8.5+1.3*r.NormFloat64()))))
			if r.Float64() < 0.06 {
				path = fmt.Sprintf("/old/page-%d.html", r.IntN(1000))
			}
			conn := "keep-alive"
			if j == n-1 {
				conn = "close"
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: www.lab\r\nUser-Agent: lab/%d\r\nConnection: %s\r\n\r\n", path, r.IntN(9), conn)
			resp, err := http.ReadResponse(rd, nil)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			time.Sleep(time.Duration(r.ExpFloat64() * float64(300*time.Millisecond)))
		}
		return nil
	case k < 0.67: // DNS: UDP mostly, TCP sometimes, NXDOMAIN for made-up names
		name := dnsNames[r.IntN(len(dnsNames))]
		if r.Float64() < 0.15 {
			name = fmt.Sprintf("h%x.corp.lab", r.Uint32())
		}
		q := dnsQuery(uint16(r.Uint32()), name)
		if r.Float64() < 0.06 {
			c, err := dial(53, 3*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
			var n uint16
			if err := binary.Read(c, binary.BigEndian, &n); err != nil {
				return err
			}
			_, err = io.CopyN(io.Discard, c, int64(n))
			return err
		}
		var c *net.UDPConn
		if err := h.Do(func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip.AsSlice()})
			return err
		}); err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.WriteToUDPAddrPort(q, netip.AddrPortFrom(ServerIP, 53)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err := c.ReadFromUDPAddrPort(q[:cap(q)])
		return err
	case k < 0.80:
		return l.mailSession(r, dial, 25)
	case k < 0.91:
		return l.mailSession(r, dial, 110)
	default: // SSH: a login (a typo now and then) and one command
		c, err := dial(22, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		pw := labPassword
		if r.Float64() < 0.08 {
			pw = labPassword[:len(labPassword)-1]
		}
		return sshExec(c, pw, "uptime")
	}
}

// sshExec logs in over c with password pw and runs cmd.
func sshExec(c net.Conn, pw, cmd string) error {
	cc, chans, reqs, err := ssh.NewClientConn(c, ServerIP.String()+":22", &ssh.ClientConfig{
		User: labUser, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // the lab's own throwaway key
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return err
	}
	cl := ssh.NewClient(cc, chans, reqs)
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.Output(cmd)
	return err
}

// mailSession is an SMTP (port 25) or POP3 (110) dialogue.
func (l *trafficLab) mailSession(r *mrand.Rand, dial func(int, time.Duration) (net.Conn, error), port int) error {
	c, err := dial(port, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	rd := bufio.NewReader(c)
	rd.ReadString('\n')
	var cmds []string
	if port == 25 {
		cmds = []string{"EHLO c" + strconv.Itoa(r.IntN(99)), "MAIL FROM:<a@b>"}
		for range 1 + r.IntN(3) {
			cmds = append(cmds, fmt.Sprintf("RCPT TO:<u%d@lab>", r.IntN(50)))
		}
		cmds = append(cmds, "DATA", strings.Repeat("y", int(math.Min(60000, math.Exp(6.5+1.2*r.NormFloat64())))), "QUIT")
	} else {
		cmds = []string{"USER " + labUser, "PASS " + labPassword, "STAT", "LIST"}
		for range r.IntN(4) {
			cmds = append(cmds, fmt.Sprintf("RETR %d", 1+r.IntN(9)))
		}
		cmds = append(cmds, "QUIT")
	}
	for _, cmd := range cmds {
		fmt.Fprintf(c, "%s\r\n", cmd)
		if _, err := rd.ReadString('\n'); err != nil {
			return err
		}
	}
	return nil
}

// bruteForce guesses SSH passwords from the attacker's namespace: tries
// logins, each a new connection, about 4 per second.
func (l *trafficLab) bruteForce(r *mrand.Rand, tries int) error {
	var failed int
	for i := 0; i < tries; i++ {
		c, err := l.attack.DialTCP(netip.AddrPortFrom(ServerIP, 22), 3*time.Second)
		if err != nil {
			failed++
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		sshExec(c, fmt.Sprintf("guess%04d", r.IntN(10000)), "id")
		c.Close()
		time.Sleep(time.Duration(150+r.IntN(200)) * time.Millisecond)
	}
	if failed == tries {
		return fmt.Errorf("brute force: no connection to %s:22", ServerIP)
	}
	return nil
}
