package bus

import (
	"testing"

	"secaas/internal/node"
)

// FuzzUnzip: whatever bytes come as a desired state, decoding returns a
// state or an error and never panics; a state it decodes survives being
// sent again.
func FuzzUnzip(f *testing.F) {
	good, _ := zip(desired("hv1", 3))
	f.Add(good)
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d node.Desired
		if err := unzip(b, &d); err != nil {
			return
		}
		again, err := zip(d)
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		var d2 node.Desired
		if err := unzip(again, &d2); err != nil || d2.Generation != d.Generation || d2.Host != d.Host || len(d2.Domains) != len(d.Domains) {
			t.Fatalf("a decoded state does not survive a second trip: %v", err)
		}
	})
}

// TestUnzipBound: a state round-trips; one that inflates past the bound
// is an error.
func TestUnzipBound(t *testing.T) {
	b, err := zip(desired("hv1", 1))
	if err != nil {
		t.Fatal(err)
	}
	var out node.Desired
	if err := unzip(b, &out); err != nil || out.Generation != 1 || out.Ports["p1"].Host != "hv1" {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	defer func(m int) { maxDesired = m }(maxDesired)
	maxDesired = 64
	if err := unzip(b, &out); err == nil {
		t.Fatal("a state past the bound was decoded")
	}
}
