package lab

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestDNSAnswers(t *testing.T) {
	a := dnsAnswer(dnsQuery(0x1234, "www.lab"))
	if a == nil || binary.BigEndian.Uint16(a) != 0x1234 || a[2]&0x80 == 0 || a[3]&0x0f != 0 || binary.BigEndian.Uint16(a[6:]) != 1 {
		t.Fatalf("known name: % x", a)
	}
	a = dnsAnswer(dnsQuery(7, "h1f2e.corp.lab"))
	if a == nil || a[3]&0x0f != 3 || binary.BigEndian.Uint16(a[6:]) != 0 {
		t.Fatalf("unknown name: want NXDOMAIN, got % x", a)
	}
	for _, junk := range [][]byte{nil, make([]byte, 11), append(dnsQuery(1, "x")[:12], 70)} {
		if dnsAnswer(junk) != nil {
			t.Fatalf("answered junk % x", junk)
		}
	}
}

func FuzzDNSAnswer(f *testing.F) {
	f.Add(dnsQuery(1, "www.lab"))
	f.Fuzz(func(t *testing.T, q []byte) { dnsAnswer(q) })
}

// TestVariedClients: TTLs span the three OS families minus hops, and a
// few clients make most sessions.
func TestVariedClients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fam := map[int]int{}
	for i := 0; i < 1000; i++ {
		ttl := clientTTL(r)
		switch {
		case ttl <= 64 && ttl >= 44:
			fam[64]++
		case ttl <= 128 && ttl >= 108:
			fam[128]++
		case ttl <= 255 && ttl >= 235:
			fam[255]++
		default:
			t.Fatalf("TTL %d", ttl)
		}
	}
	if fam[64] < 500 || fam[128] < 200 || fam[255] < 50 {
		t.Fatalf("TTL families %v", fam)
	}
	p := newPopularity(r, 300)
	count := make([]int, 300)
	for i := 0; i < 30000; i++ {
		count[p.pick()]++
	}
	seen := 0
	for _, c := range count {
		if c > 0 {
			seen++
		}
	}
	slices.SortFunc(count, func(a, b int) int { return b - a })
	top := 0
	for _, c := range count[:30] {
		top += c
	}
	t.Logf("%d of 300 clients seen; the top 10 %% made %.0f %% of sessions", seen, 100*float64(top)/30000)
	if seen < 200 || top < 30000*4/10 || top > 30000*9/10 {
		t.Fatalf("%d clients seen, top 10 %% made %d of 30000 sessions", seen, top)
	}
}
