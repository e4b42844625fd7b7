// Package cli implements the secaas command on spf13/cobra: offline policy
// tools (compile, check, trace, apply, migrate), the namespace lab and test
// guests, benchmarks, and a client for the secaasd REST API.
//
// Each verb is one entry of commands(): its words, positional arguments,
// description, examples, required flags and run function. A run function
// declares its flags on newFlags' flag set and parses them with parse; the
// cobra tree learns them by a declaration pass, so help, shell completion
// and validation (types, durations, required flags) see every flag and a
// bad command line exits 2 before anything is tried. Read verbs print
// through one output layer (-o table|wide|json|yaml; json and yaml are the
// API's own documents). Exit status: 0 done, 1 failed, 2 usage, 3 a DROP
// or INFECTED verdict. Secrets are read at request time, never shown.
package cli
