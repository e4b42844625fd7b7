package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"secaas/internal/lab/labtest"
)

func readAll(t testing.TB, r io.Reader) (n int, metas []Meta) {
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	var m Meta
	for {
		p, err := rd.Next()
		if err == io.EOF {
			return n, metas
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if Decode(p.LinkType, p.Data, &m) == nil {
			metas = append(metas, m)
		}
	}
}

// TestRealCaptures reads every shared capture and agrees with tcpdump on
// the packet count.
func TestRealCaptures(t *testing.T) {
	dir := filepath.Join(labtest.DataDir(t), "pcaps")
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if len(files) == 0 {
		labtest.Missing(t, "no captures in "+dir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			n, metas := readAll(t, fh)
			if n == 0 || len(metas) < n*9/10 {
				t.Fatalf("%d packets, %d decoded", n, len(metas))
			}
			if _, err := exec.LookPath("tcpdump"); err == nil {
				out, err := exec.Command("sh", "-c", "tcpdump -nn -r "+f+" 2>/dev/null | wc -l").Output()
				if err != nil {
					t.Fatal(err)
				}
				want, _ := strconv.Atoi(strings.TrimSpace(string(out)))
				if n != want {
					t.Fatalf("read %d packets, tcpdump %d", n, want)
				}
			}
			if strings.Contains(f, "synflood") {
				syn := 0
				for _, m := range metas {
					if m.Proto == ProtoTCP && m.TCPFlags&TCPSyn != 0 && m.TCPFlags&TCPAck == 0 {
						syn++
					}
				}
				if syn < len(metas)*9/10 {
					t.Fatalf("SYN flood capture: only %d of %d packets are SYN", syn, len(metas))
				}
			}
		})
	}
}

// pcapFile builds a little-endian microsecond pcap of Ethernet frames.
func pcapFile(frames ...[]byte) []byte {
	var b bytes.Buffer
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], LinkEthernet)
	b.Write(h)
	for i, f := range frames {
		r := make([]byte, 16)
		binary.LittleEndian.PutUint32(r[0:], uint32(1000+i))
		binary.LittleEndian.PutUint32(r[4:], 250000)
		binary.LittleEndian.PutUint32(r[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(r[12:], uint32(len(f)))
		b.Write(r)
		b.Write(f)
	}
	return b.Bytes()
}

// tcpFrame is an Ethernet/IPv4/TCP frame.
func tcpFrame(src, dst [4]byte, sport, dport uint16, flags uint8, ttl uint8) []byte {
	f := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8], ip[9] = ttl, ProtoTCP
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12], tcp[13] = 5<<4, flags
	return f
}

func TestPcapRoundTripAndDecode(t *testing.T) {
	file := pcapFile(tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 40000, 22, TCPSyn, 64))
	rd, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	p, err := rd.Next()
	if err != nil {
		t.Fatal(err)
	}
	if p.Time != 1000*1e9+250000*1e3 || p.LinkType != LinkEthernet {
		t.Fatalf("packet %+v", p)
	}
	var m Meta
	if err := Decode(p.LinkType, p.Data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Src.String() != "10.0.0.1" || m.Dst.String() != "10.0.0.2" || m.SrcPort != 40000 || m.DstPort != 22 ||
		m.TCPFlags != TCPSyn || m.TTL != 64 || m.Len != 40 || m.Proto != ProtoTCP {
		t.Fatalf("meta %+v", m)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

// Every truncation of a valid file ends in EOF at a record boundary or a
// FormatError with the offset, never a panic.
func TestTruncatedCaptures(t *testing.T) {
	dir := filepath.Join(labtest.DataDir(t), "pcaps")
	for _, name := range []string{"esnet-nmap-80-all.pcap", "stopddos-udp-snmp-amplification.pcapng"} {
		full, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		full = full[:min(len(full), 20000)]
		for cut := 0; cut < len(full); cut += 37 {
			rd, err := NewReader(bytes.NewReader(full[:cut]))
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("%s cut %d: %v is not a FormatError", name, cut, err)
				}
				continue
			}
			for {
				_, err := rd.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					var fe *FormatError
					if !errors.As(err, &fe) || fe.Offset > int64(cut) {
						t.Fatalf("%s cut %d: %v", name, cut, err)
					}
					break
				}
			}
		}
	}
}

func TestBadFiles(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":      {},
		"bad magic":  []byte("GIF89a..........................."),
		"huge":       append(pcapFile()[:24], 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0),
		"bad usec":   append(pcapFile()[:24], 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0),
		"ng no shb":  {1, 0, 0, 0, 12, 0, 0, 0, 12, 0, 0, 0},
		"ng bad len": {0x0a, 0x0d, 0x0d, 0x0a, 9, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a},
	} {
		t.Run(name, func(t *testing.T) {
			rd, err := NewReader(bytes.NewReader(b))
			if err == nil {
				_, err = rd.Next()
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a FormatError", err)
			}
		})
	}
}

func FuzzReader(f *testing.F) {
	f.Add(pcapFile(tcpFrame([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, TCPSyn, 9)))
	if dir, ok := labtest.FindDataDir(); ok {
		for _, name := range []string{"esnet-nmap-80-all.pcap", "stopddos-udp-snmp-amplification.pcapng"} {
			if b, err := os.ReadFile(filepath.Join(dir, "pcaps", name)); err == nil {
				f.Add(b[:min(len(b), 4096)])
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rd, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		var m Meta
		for i := 0; i < 10000; i++ {
			p, err := rd.Next()
			if err != nil {
				var fe *FormatError
				if err != io.EOF && !errors.As(err, &fe) {
					t.Fatalf("error %v is neither EOF nor a FormatError", err)
				}
				return
			}
			if len(p.Data) > MaxPacket {
				t.Fatalf("packet of %d bytes", len(p.Data))
			}
			Decode(p.LinkType, p.Data, &m)
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add(LinkEthernet, tcpFrame([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, TCPSyn, 9))
	f.Add(LinkRaw, tcpFrame([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, TCPSyn, 9)[14:])
	f.Fuzz(func(t *testing.T, link int, b []byte) {
		var m Meta
		Decode(link, b, &m)
	})
}

func BenchmarkDecode(b *testing.B) {
	frame := tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 40000, 22, TCPSyn, 64)
	var m Meta
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := Decode(LinkEthernet, frame, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	frame := tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 40000, 22, TCPSyn, 64)
	file := pcapFile(frame, frame, frame)
	var m Meta
	if n := testing.AllocsPerRun(1000, func() { Decode(LinkEthernet, frame, &m) }); n != 0 {
		t.Fatalf("Decode allocates %.1f per packet", n)
	}
	r, _ := NewReader(bytes.NewReader(append(file, bytes.Repeat(file[24:], 400)...)))
	r.Next()
	if n := testing.AllocsPerRun(1000, func() { r.Next() }); n != 0 {
		t.Fatalf("pcap Next allocates %.1f per packet", n)
	}
}
