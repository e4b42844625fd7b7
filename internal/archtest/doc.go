// Package archtest holds tests of the repository's shape: every package has
// a doc.go, and the analysis packages stay free of I/O dependencies.
package archtest
