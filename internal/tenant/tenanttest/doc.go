// Package tenanttest generates random tenant nets and packets for property
// and differential tests of every enforcement backend.
package tenanttest
