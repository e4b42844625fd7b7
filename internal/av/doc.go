// Package av is HyperAV's scan backend: several engines scan the bytes of a
// file rebuilt outside the VM, in parallel, and a verdict policy combines
// their answers (by default any positive engine makes the file INFECTED).
//
// Engines: clamd, through its INSTREAM protocol on a unix socket (Clamd
// starts one of our own with an offline signature database: no network,
// no freshclam); a hash list (SHA-256 of known-bad files); and YARA rules,
// loaded into that clamd (ClamAV compiles .yar files from its database
// directory). Engine replies are untrusted input: the clamd reply parser
// is fuzzed.
package av
