// Package feature turns the packets of one monitored server (a VM's IP)
// into fixed time windows and computes, per window, the 8 traffic-structure
// features of the 2018 paper (§III.A.2) and the 11 features of the 2020
// paper (Table 1). It does no I/O and, after warm-up, allocates nothing per
// packet: per-window tables are maps cleared (not reallocated) between
// windows.
//
// # Which packets count
//
// A packet belongs to the server's window if the server is its source or
// destination. The other end is the client. The service port is the
// server-side port (destination port inbound, source port outbound). TTLs
// are taken from inbound packets only (the server's own TTL is constant).
// Packet length is the IP datagram length. Windows are [kW, (k+1)W) in
// capture time; a packet older than the open window is counted in it;
// windows without packets are emitted (all-zero features), so the series is
// regular.
//
// # The 2018 features (Stability, in this order)
//
// All entropies are Shannon entropies in bits over packet-count proportions.
//
//  1. syn: packets with the SYN flag / all packets. By default SYN+ACK
//     counts too (the paper's words: "packets with SYN flag");
//     Config.SYNWithoutACK counts only connection requests.
//  2. ipentr: entropy of packets over client IPs.
//  3. ipcorr: Pearson correlation of the per-client packet counts of this
//     window and the previous one, over the union of their clients. When a
//     vector has zero variance it falls back to cosine similarity; 0 when
//     either window is empty; 1 for the first window (no evidence of change).
//  4. ttl: entropy of inbound packets over TTL values.
//  5. portsrv: entropy of TCP/UDP packets over service ports.
//  6. porto: entropy of packets over {TCP, UDP, ICMP, other}.
//  7. packet: entropy of packets over lengths, in buckets of
//     Config.LengthBucket bytes (default 1: exact lengths).
//  8. portacc: the port access index: for each client, k = the number of
//     distinct service ports it reached (inbound TCP/UDP); the entropy of the
//     distribution of k over clients (each client counts once; Config.
//     AccessByPackets weights clients by their packets instead). This is the
//     2020 paper's access_port, used for both.
//
// # The 2020 features (LSTM, in Table 1's order)
//
// access_port (= portacc), ip_entro (= ipentr), service_port_entro
// (= portsrv), syn_rate (= syn), bps and pps (bytes and packets per second
// of window), packet_per_ip, ip_count (distinct clients), syn_per_ip,
// bytes_per_ip, syn_count. Per-IP features are 0 when there is no client.
//
// # Extra features (ours, beyond the papers)
//
// Slow scans, slow floods from spoofed sources and password guessing move
// none of the papers' features much; three counts do (ExtraNames):
// new_clients (clients not seen in the MemoryWindows windows before; at
// most 65,536 clients are remembered, the rest count as new), rst_out
// (packets from the server with RST, and ICMP from the server: what probes
// of closed ports draw) and max_syn_conn (the most SYNs without ACK one
// client sent to one service port). The normalized detector and the
// forecaster read them; the paper's detectors do not.
package feature
