package bench

import "testing"

func TestPMDStats(t *testing.T) {
	out := `Main thread:
  packets received: 4000
  emc hits: 3891
  megaflow hits: 109
  avg. subtable lookups per megaflow hit: 2.93
  miss with success upcall: 3
pmd thread numa_id 0 core_id 1:
  packets received: 1000
  emc hits: 1000
`
	s := pmdStats(out)
	if s["packets received"] != 5000 || s["emc hits"] != 4891 || s["avg. subtable lookups per megaflow hit"] != 2.93 || s["miss with success upcall"] != 3 {
		t.Fatalf("got %v", s)
	}
}

func TestMedianCase(t *testing.T) {
	c := medianCase([]ForwardCase{{ID: 2, OVSCPU: 30}, {ID: 2, OVSCPU: 10}, {ID: 2, OVSCPU: 20}})
	if c.ID != 2 || c.OVSCPU != 20 || c.OVSCPUMin != 10 || c.OVSCPUMax != 30 {
		t.Fatalf("got %+v", c)
	}
}
