package lab

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"secaas/internal/capture"
	"secaas/internal/lab/labtest"
	"secaas/internal/tenant"
)

func TestRewriteToServer(t *testing.T) {
	in := filepath.Join(labtest.DataDir(t), "pcaps", "esnet-masscan-tcp-0-1000.pcap")
	out := filepath.Join(t.TempDir(), "r.pcap")
	srvMAC, atkMAC := tenant.MAC{2, 0x50, 0, 0, 0, 1}, tenant.MAC{2, 0x50, 0, 0, 0, 99}
	st, err := RewriteToServer(in, out, ServerIP, srvMAC, atkMAC)
	if err != nil {
		t.Fatal(err)
	}
	if st.Kept < 900 || !st.Victim.IsValid() {
		t.Fatalf("stats %+v", st)
	}
	f, _ := os.Open(out)
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var m capture.Meta
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if tenant.MAC(p.Data[0:6]) != srvMAC || tenant.MAC(p.Data[6:12]) != atkMAC {
			t.Fatalf("packet %d: MACs % x", n, p.Data[:12])
		}
		if err := capture.Decode(p.LinkType, p.Data, &m); err != nil || m.Dst != ServerIP {
			t.Fatalf("packet %d: %v %+v", n, err, m)
		}
		ip := p.Data[14:]
		ihl := int(ip[0]&0x0f) * 4
		if fold(sum(ip[:ihl], 0)) != 0xffff {
			t.Fatalf("packet %d: bad IP checksum", n)
		}
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if m.Proto == capture.ProtoTCP && total <= len(ip) {
			l4 := ip[ihl:total]
			if fold(sum(l4, sum(ip[12:20], 0)+uint32(ip[9])+uint32(len(l4)))) != 0xffff {
				t.Fatalf("packet %d: bad TCP checksum", n)
			}
		}
	}
	if n != st.Kept {
		t.Fatalf("read %d, kept %d", n, st.Kept)
	}
}
