/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Write protection off and on, as rootkits do to write kernel text and
 * read-only data: straight to the register, since the kernel's write_cr0
 * pins WP on. For the test modules only.
 */
#ifndef SECAAS_CR0_H
#define SECAAS_CR0_H

static inline unsigned long cr0_get(void)
{
	unsigned long v;

	asm volatile("mov %%cr0,%0" : "=r"(v));
	return v;
}

static inline void cr0_set(unsigned long v)
{
	asm volatile("mov %0,%%cr0" : : "r"(v) : "memory");
}

#endif
