/* secaas syscall monitor, injected into the guest kernel (package kmon).
 *
 * The guest's do_syscall_64 calls x64_sys_call(regs, nr); kmon rewrites
 * that call to land here. The monitor counts every syscall by number and
 * fails the numbers whose bit is set in block with -EPERM; the host reads
 * and writes secaas_shared directly (guest memory, through the gdbstub or
 * the shared RAM file). Build: see kmon's tests (the kernel code model,
 * no unwind tables, -fno-merge-constants, -fno-common).
 */
struct pt_regs;
extern long x64_sys_call(const struct pt_regs *regs, unsigned int nr);

#define SECAAS_NR 512
#define SECAAS_MAGIC 0x5345434141534d31UL /* "SECAASM1" */

struct secaas_shared {
	unsigned long magic;
	unsigned long calls;                  /* every syscall seen */
	unsigned long blocked;                /* every syscall failed */
	unsigned long in_flight;              /* tasks inside the monitor now */
	unsigned long block[SECAAS_NR / 64];  /* the numbers to fail */
	unsigned long count[SECAAS_NR];       /* per number */
};

struct secaas_shared secaas_shared = { .magic = SECAAS_MAGIC };

long secaas_dispatch(const struct pt_regs *regs, unsigned int nr)
{
	long r;

	__atomic_fetch_add(&secaas_shared.calls, 1, __ATOMIC_RELAXED);
	if (nr < SECAAS_NR) {
		__atomic_fetch_add(&secaas_shared.count[nr], 1, __ATOMIC_RELAXED);
		if ((__atomic_load_n(&secaas_shared.block[nr / 64], __ATOMIC_RELAXED) >> (nr % 64)) & 1) {
			__atomic_fetch_add(&secaas_shared.blocked, 1, __ATOMIC_RELAXED);
			return -1; /* -EPERM */
		}
	}
	/* A task blocked in a syscall keeps this frame: the code may be freed
	 * only when no task is inside. */
	__atomic_fetch_add(&secaas_shared.in_flight, 1, __ATOMIC_SEQ_CST);
	r = x64_sys_call(regs, nr);
	__atomic_fetch_sub(&secaas_shared.in_flight, 1, __ATOMIC_SEQ_CST);
	return r;
}
