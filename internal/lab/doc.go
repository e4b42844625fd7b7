// Package lab builds real test networks on the host: network namespaces
// with a veth pair each stand in for VMs, attached to an Open vSwitch bridge
// under the VM's port name. Tests, the demo and the benchmarks use it to
// send real packets through the real switch. Everything it creates carries
// a caller-chosen prefix so that it can be torn down again.
package lab
