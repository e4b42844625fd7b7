package ovs

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseTrace(t *testing.T) {
	for _, tc := range []struct {
		file    string
		dropped bool
		out     []uint32
		cookies int
	}{
		{"testdata/trace-pass.txt", false, []uint32{3}, 2},
		{"testdata/trace-drop.txt", true, nil, 2},              // the isolation rule
		{"testdata/trace-flood.txt", false, []uint32{2, 3}, 0}, // output to the ingress port is skipped
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := ParseTrace(string(b))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if tr.Dropped != tc.dropped || !slices.Equal(tr.Out, tc.out) || len(tr.Cookies) != tc.cookies {
			t.Errorf("%s: got dropped=%v out=%v cookies=%x", tc.file, tr.Dropped, tr.Out, tr.Cookies)
		}
	}
	if _, err := ParseTrace("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParsePorts(t *testing.T) {
	// ovs-vsctl's answer to "find Interface -- list-ifaces BR": the JSON
	// table, then the bridge's interfaces one per line.
	out := `{"data":[["tv3",3],["tv1",1],["tbr",65534],["tv2",2],["other",9],["new",["set",[]]],["bad",-1]],"headings":["name","ofport"]}` +
		"\nbad\nnew\ntbr\ntv1\ntv2\ntv3\n"
	p, err := parsePorts([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 3 || p["tv1"] != 1 || p["tv2"] != 2 || p["tv3"] != 3 {
		t.Fatalf("got %v", p)
	}
	if p, err := parsePorts([]byte(`{"data":[["tv1",1]]}`)); err != nil || len(p) != 0 {
		t.Fatalf("no interfaces of the bridge: got %v, %v", p, err)
	}
	if _, err := parsePorts([]byte("{")); err == nil {
		t.Fatal("bad json accepted")
	}
}

func FuzzParseTrace(f *testing.F) {
	for _, name := range []string{"testdata/trace-pass.txt", "testdata/trace-drop.txt", "testdata/trace-flood.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, err := ParseTrace(s)
		if err == nil && !strings.Contains(s, "Datapath actions: ") {
			t.Fatalf("accepted a trace without datapath actions: %+v", tr)
		}
	})
}
