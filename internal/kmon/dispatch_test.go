package kmon

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestFindDispatch(t *testing.T) {
	const addr, target = 0xffffffff81e00000, 0xffffffff81003000
	code := make([]byte, 64)
	for i := range code {
		code[i] = 0x90
	}
	put := func(at int, to uint64) {
		code[at] = 0xe8
		binary.LittleEndian.PutUint32(code[at+1:], uint32(int32(int64(to-(addr+uint64(at)+5)))))
	}
	if _, err := FindDispatch(code, addr, target); !errors.Is(err, ErrNoDirectDispatch) {
		t.Fatalf("no call: %v", err)
	}
	put(10, target+16) // a call elsewhere
	put(30, target)
	site, err := FindDispatch(code, addr, target)
	if err != nil || site != addr+30 {
		t.Fatalf("site %#x %v", site, err)
	}
	b, err := rel32(site, target)
	if err != nil || binary.LittleEndian.Uint32(b) != binary.LittleEndian.Uint32(code[31:]) {
		t.Fatalf("rel32 %x %v", b, err)
	}
	put(50, target)
	if _, err := FindDispatch(code, addr, target); err == nil {
		t.Fatal("two calls: took one")
	}
	if _, err := rel32(0x7fff00000000, 0xffffffff81000000); err == nil {
		t.Fatal("out of reach accepted")
	}
}
