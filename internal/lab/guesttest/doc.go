// Package guesttest is what tests that boot a QEMU guest share: the
// guest kernel to boot (or a skip with the reason, a failure under CI,
// when QEMU or the kernel is missing), booting it for a test (Start), and
// reading its kernel (OpenKernel). It is a package of its own because
// package lab's own tests use labtest, which therefore cannot use lab.
package guesttest
