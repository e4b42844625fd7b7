package flow

import (
	"fmt"

	"secaas/internal/tenant"
)

// BigDomain is a domain of 4 subnets x 4 VMs with nACR rules spread over the
// subnets (each naming a VM pair, a protocol and a port), for benchmarks.
func BigDomain(tid, nACR int) tenant.Domain {
	d := tenant.Domain{TID: tid, Name: fmt.Sprintf("big%d", tid)}
	var names []string
	for s := 0; s < 4; s++ {
		sub := tenant.Subnet{Name: fmt.Sprintf("s%d", s)}
		for v := 0; v < 4; v++ {
			i := s*4 + v
			name := fmt.Sprintf("vm%d", i)
			names = append(names, name)
			sub.VMs = append(sub.VMs, tenant.VM{Name: name, MAC: fmt.Sprintf("02:00:%02x:00:00:%02x", tid%256, i+1),
				IP: fmt.Sprintf("10.%d.0.%d", tid%256, i+1), Port: fmt.Sprintf("b%dp%d", tid, i)})
		}
		d.Subnets = append(d.Subnets, sub)
	}
	for k := 0; k < nACR; k++ {
		a := tenant.ACR{Priority: k % 1000, Action: tenant.Pass, Proto: "tcp",
			SrcIP: []string{names[k%16]}, DstIP: []string{fmt.Sprintf("10.%d.%d.0/24", tid%256, k%200)},
			DstPort: tenant.PortRange{Lo: uint16(1 + k%60000), Hi: uint16(1 + k%60000)}}
		if k%7 == 0 {
			a.Action = tenant.Drop
		}
		d.Subnets[k%4].ACRs = append(d.Subnets[k%4].ACRs, a)
	}
	return d
}
