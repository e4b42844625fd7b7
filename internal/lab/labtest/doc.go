// Package labtest gates integration tests on what they need. Outside CI a
// missing prerequisite skips the test with the reason; with CI=true it fails
// the run, so that CI can never pass by skipping.
// It imports no package of the project but ovs, so that any package's tests
// may use it.
package labtest
