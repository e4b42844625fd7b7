/* Calls into the kernel with arguments, a loop, and a function pointer
 * kept in a table: PLT32 calls, 32S addresses (-mcmodel=kernel), a
 * 64-bit pointer table in .data. */
extern int printk(const char *fmt, ...);
extern void *__kmalloc(unsigned long size, unsigned int flags);
extern void kfree(const void *p);
extern unsigned long jiffies;

static int counter;
int hits[16];

static int note(int n)
{
	counter += n;
	return printk("secaas: %d %lu\n", counter, jiffies);
}

int (*const hooks[2])(int) = { note, 0 };

long monitor_entry(long nr, const char *path)
{
	char *buf = __kmalloc(64 + (nr & 7), 0xcc0);
	long r = 0;
	if (!buf)
		return -12;
	for (int i = 0; path && path[i] && i < 63; i++)
		buf[i] = path[i] ^ (char)nr;
	hits[nr & 15]++;
	r = hooks[0]((int)nr);
	kfree(buf);
	return r;
}
