// SPDX-License-Identifier: GPL-2.0
/*
 * secaas_tamper: a test module that attacks an injected syscall monitor the
 * way a rootkit that found it would, for secaas's protection tests:
 *
 *   insmod secaas_tamper.ko site=ADDR target=ADDR
 *       rewrites the call instruction at site (do_syscall_64's call of the
 *       syscall dispatch) to call target instead (x64_sys_call: the monitor
 *       is bypassed), with the CPU's write protection off for the moment of
 *       the write, as rootkits do.
 *   insmod secaas_tamper.ko zero=ADDR zero_len=N
 *       zeroes N bytes of kernel memory at ADDR (a monitor's policies: it
 *       is disarmed).
 *   insmod secaas_tamper.ko lstar=1
 *       moves every CPU's syscall entry (the LSTAR MSR) to a stub of its own
 *       that jumps to the kernel's entry: every syscall passes the rootkit
 *       first. The guest must run with pti=off (with page-table isolation
 *       the stub is not mapped at the entry). Unloading puts LSTAR back.
 *
 * Build it only for test guests.
 */
#include <linux/module.h>
#include <linux/irqflags.h>
#include <linux/smp.h>
#include <asm/msr.h>
#include <asm/processor-flags.h>
#include "secaas_cr0.h"

static unsigned long site;
module_param(site, ulong, 0);
MODULE_PARM_DESC(site, "address of a 5-byte call instruction in kernel text");
static unsigned long target;
module_param(target, ulong, 0);
MODULE_PARM_DESC(target, "the function the call should reach");

static unsigned long zero;
module_param(zero, ulong, 0);
MODULE_PARM_DESC(zero, "address of kernel memory to zero");
static int zero_len;
module_param(zero_len, int, 0);
MODULE_PARM_DESC(zero_len, "bytes to zero at zero");

static int lstar;
module_param(lstar, int, 0);
MODULE_PARM_DESC(lstar, "move the syscall entry to this module's stub");

unsigned long secaas_tamper_orig;
void secaas_tamper_entry(void);
/* At the entry: no stack, user GS; only a jump through memory. */
asm(".pushsection .text\n"
    ".globl secaas_tamper_entry\n"
    "secaas_tamper_entry:\n"
    "\tjmp *secaas_tamper_orig(%rip)\n"
    "\tint3\n"
    ".popsection\n");

static void set_lstar(void *v)
{
	wrmsrl(MSR_LSTAR, (unsigned long)v);
}

static int __init tamper_init(void)
{
	unsigned char *p = (unsigned char *)site;
	long rel = (long)target - (long)(site + 5);
	unsigned long flags, cr0;

	if (zero) {
		if (zero_len <= 0 || zero_len > 65536)
			return -EINVAL;
		memset((void *)zero, 0, zero_len);
		pr_info("secaas_tamper: zeroed %d bytes at %lx\n", zero_len, zero);
		return 0;
	}
	if (lstar) {
		rdmsrl(MSR_LSTAR, secaas_tamper_orig);
		on_each_cpu(set_lstar, (void *)secaas_tamper_entry, 1);
		pr_info("secaas_tamper: syscall entry moved from %lx to %px\n", secaas_tamper_orig, secaas_tamper_entry);
		return 0;
	}
	if (!site || !target || p[0] != 0xe8 || rel != (int)rel)
		return -EINVAL;
	local_irq_save(flags);
	cr0 = cr0_get();
	cr0_set(cr0 & ~X86_CR0_WP);
	*(int *)(p + 1) = (int)rel;
	cr0_set(cr0);
	local_irq_restore(flags);
	pr_info("secaas_tamper: the call at %lx now reaches %lx\n", site, target);
	return 0;
}

static void __exit tamper_exit(void)
{
	if (lstar && secaas_tamper_orig)
		on_each_cpu(set_lstar, (void *)secaas_tamper_orig, 1);
}

module_init(tamper_init);
module_exit(tamper_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("secaas test: re-patches a hooked syscall dispatch, or moves the syscall entry");
