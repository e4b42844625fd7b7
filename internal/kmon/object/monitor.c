/* secaas syscall monitor, injected into the guest kernel (package kmon).
 *
 * The guest's do_syscall_64 calls x64_sys_call(regs, nr); kmon rewrites
 * that call to land in secaas_dispatch. The monitor counts every syscall
 * by number, fails the numbers marked in block with -EPERM, and applies
 * the policies P = (syscalls, (subject process, object file), action):
 * a syscall in a policy's set, made by a task whose comm is the subject,
 * on the object path (open's or openat's file name; an empty object
 * matches any), is recorded as an event, and with action block fails
 * with -EPERM. The host reads and writes secaas_shared directly in guest
 * memory; it fills in the task layout (from the guest's BTF) before the
 * hook goes in. Build: see kmon's tests (the kernel code model,
 * -mgeneral-regs-only: no SSE in the kernel, no unwind tables,
 * -fno-merge-constants, -fno-common).
 */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
extern long x64_sys_call(const struct pt_regs *regs, unsigned int nr);
extern long strncpy_from_user(char *dst, const char *src, long count);
extern long long ktime_get(void);

#define SECAAS_NR 512
#define SECAAS_POLICIES 8
#define SECAAS_EVENTS 64
#define SECAAS_PATH 128
#define SECAAS_MAGIC 0x5345434141534d32UL /* "SECAASM2" */
#define NR_OPEN 2
#define NR_OPENAT 257
#define MSR_LSTAR 0xc0000082

enum { ACTION_OFF, ACTION_RECORD, ACTION_BLOCK };

struct secaas_policy {
	unsigned long syscalls[SECAAS_NR / 64];
	char subject[16];        /* comm */
	char object[SECAAS_PATH]; /* path; empty: any */
	unsigned int action;
	unsigned int pad;
};

struct secaas_event {
	unsigned long seq; /* written last: 1 + the event's number */
	long long time_ns; /* the guest's monotonic clock */
	int pid, uid;
	unsigned int nr;
	int verdict; /* ACTION_RECORD or ACTION_BLOCK */
	char comm[16];
	char path[SECAAS_PATH];
};

struct secaas_shared {
	unsigned long magic;
	unsigned long calls;     /* every syscall seen */
	unsigned long blocked;   /* every syscall failed */
	unsigned long in_flight; /* tasks inside the monitor now */
	unsigned long block[SECAAS_NR / 64];
	unsigned long count[SECAAS_NR];
	unsigned int off_pid, off_comm, off_cred, off_uid; /* from the host */
	unsigned long watch[SECAAS_NR / 64]; /* union of the policies' sets */
	struct secaas_policy policy[SECAAS_POLICIES];
	unsigned long ev_head; /* events written so far */
	struct secaas_event ev[SECAAS_EVENTS];
	unsigned long lstar_seen; /* the syscall entry MSR, read now and then */
	unsigned long lstar_good; /* its value when the monitor came */
	/* The per-CPU offset (in %gs) of the current task's pointer, from the
	 * host: current_task until 6.1, pcpu_hot.current_task since. */
	unsigned long current_off;
};

_Static_assert(__builtin_offsetof(struct secaas_shared, off_pid) == 4192, "layout: off_pid");
_Static_assert(__builtin_offsetof(struct secaas_shared, watch) == 4208, "layout: watch");
_Static_assert(__builtin_offsetof(struct secaas_shared, policy) == 4272, "layout: policy");
_Static_assert(sizeof(struct secaas_policy) == 216, "layout: policy size");
_Static_assert(__builtin_offsetof(struct secaas_shared, ev_head) == 6000, "layout: ev_head");
_Static_assert(sizeof(struct secaas_event) == 176, "layout: event size");
_Static_assert(__builtin_offsetof(struct secaas_shared, lstar_seen) == 17272, "layout: lstar_seen");
_Static_assert(__builtin_offsetof(struct secaas_shared, current_off) == 17288, "layout: current_off");

/* Pages of its own: the host writes here and the monitor counts here, and
 * a write to a page that holds code costs (an emulator retranslates the
 * page, a CPU clears its pipeline). */
struct secaas_shared secaas_shared __attribute__((aligned(4096))) = { .magic = SECAAS_MAGIC };

static inline char *current(void)
{
	char *t;
	asm volatile("movq %%gs:(%1), %0" : "=r"(t) : "r"(secaas_shared.current_off));
	return t;
}

static int bit(const unsigned long *set, unsigned int nr)
{
	return (__atomic_load_n(&set[nr / 64], __ATOMIC_RELAXED) >> (nr % 64)) & 1;
}

static int same(const char *a, const char *b, int n)
{
	for (int i = 0; i < n; i++) {
		if (a[i] != b[i])
			return 0;
		if (!a[i])
			return 1;
	}
	return 1;
}

static void record(const struct secaas_policy *p, char *task, unsigned int nr, const char *path, int verdict)
{
	struct secaas_shared *s = &secaas_shared;
	unsigned long n = __atomic_fetch_add(&s->ev_head, 1, __ATOMIC_RELAXED);
	struct secaas_event *e = &s->ev[n % SECAAS_EVENTS];
	char *cred = *(char **)(task + s->off_cred);

	e->time_ns = ktime_get();
	e->pid = *(int *)(task + s->off_pid);
	e->uid = cred ? *(int *)(cred + s->off_uid) : -1;
	e->nr = nr;
	e->verdict = verdict;
	for (int i = 0; i < 16; i++)
		e->comm[i] = task[s->off_comm + i];
	for (int i = 0; i < SECAAS_PATH; i++)
		e->path[i] = path[i];
	__atomic_store_n(&e->seq, n + 1, __ATOMIC_RELEASE);
	(void)p;
}

/* policy applies the policies to one syscall: the action taken. */
static __attribute__((noinline)) int policy(const struct pt_regs *regs, unsigned int nr)
{
	struct secaas_shared *s = &secaas_shared;
	char path[SECAAS_PATH];
	char *task = current();
	const char *comm = task + s->off_comm;
	const char *user = 0;
	int verdict = ACTION_OFF;

	path[0] = 0;
	if (nr == NR_OPEN)
		user = (const char *)regs->di;
	else if (nr == NR_OPENAT)
		user = (const char *)regs->si;
	if (user && strncpy_from_user(path, user, SECAAS_PATH - 1) < 0)
		path[0] = 0;
	path[SECAAS_PATH - 1] = 0;
	for (int i = 0; i < SECAAS_POLICIES; i++) {
		const struct secaas_policy *p = &s->policy[i];
		unsigned int action = __atomic_load_n(&p->action, __ATOMIC_ACQUIRE);
		if (action == ACTION_OFF || !bit(p->syscalls, nr) || !same(comm, p->subject, 16))
			continue;
		if (p->object[0] && !same(path, p->object, SECAAS_PATH))
			continue;
		record(p, task, nr, path, action);
		if (action > verdict)
			verdict = action;
	}
	return verdict;
}

static unsigned long lstar(void)
{
	unsigned int lo, hi;
	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_LSTAR));
	return (unsigned long)hi << 32 | lo;
}

/* secaas_read_lstar records the syscall entry as it is now (the host calls
 * it once, when the monitor comes). */
unsigned long secaas_read_lstar(void)
{
	struct secaas_shared *s = &secaas_shared;
	s->lstar_good = s->lstar_seen = lstar();
	return s->lstar_good;
}

/* secaas_fix_lstar puts the recorded syscall entry back on this CPU (the
 * host has the kernel run it on every CPU). */
void secaas_fix_lstar(void *unused)
{
	unsigned long v = secaas_shared.lstar_good;
	(void)unused;
	asm volatile("wrmsr" : : "c"(MSR_LSTAR), "a"((unsigned int)v), "d"((unsigned int)(v >> 32)) : "memory");
}

long secaas_dispatch(const struct pt_regs *regs, unsigned int nr)
{
	struct secaas_shared *s = &secaas_shared;

	/* Statistics are plain increments: cheap, and a few may be lost when
	 * CPUs race. */
	s->calls++;
	/* The entry MSR, now and then: a rootkit that moves the syscall entry
	 * bypasses the dispatch altogether. */
	if ((s->calls & 1023) == 0)
		s->lstar_seen = lstar();
	if (nr < SECAAS_NR) {
		s->count[nr]++;
		if (bit(s->block, nr))
			goto blocked;
		if (bit(s->watch, nr)) {
			int v;
			if (nr == NR_OPEN || nr == NR_OPENAT) {
				/* Reading the path can fault and sleep: counted, so that
				 * the host frees the code only when no task is in it. */
				__atomic_fetch_add(&s->in_flight, 1, __ATOMIC_SEQ_CST);
				v = policy(regs, nr);
				__atomic_fetch_sub(&s->in_flight, 1, __ATOMIC_SEQ_CST);
			} else {
				v = policy(regs, nr); /* never sleeps */
			}
			if (v == ACTION_BLOCK)
				goto blocked;
		}
	}
	/* A tail call: the syscall returns straight to do_syscall_64, so a
	 * task blocked in it keeps no frame here. After the unhook the code
	 * may be freed once no task sleeps in policy (in_flight) and every
	 * task has passed a voluntary context switch (synchronize_rcu_tasks):
	 * a task preempted elsewhere in this function has not. */
	return x64_sys_call(regs, nr);
blocked:
	s->blocked++;
	return -1; /* -EPERM */
}
