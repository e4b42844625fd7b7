/* A switch that becomes a jump table (32S entries in .rodata), strings,
 * const data with addresses of data and functions, and .bss. */
extern long x64_sys_call(const void *regs, unsigned int nr);
extern char saved_command_line[];

struct policy {
	const char *subject;
	const char *object;
	unsigned long syscalls;
	int verdict;
};

const struct policy policies[] = {
	{ "vim", "/etc/hosts", 0xf, 1 },
	{ "cat", "/etc/shadow", 0x3, 2 },
	{ "sh", saved_command_line, 0x1, 1 },
};

static unsigned char ring[4096];
unsigned long ring_head;

long classify(unsigned int nr, const void *regs)
{
	switch (nr) {
	case 0: ring_head += 1; break;
	case 1: ring_head += 3; break;
	case 2: ring_head ^= 5; break;
	case 3: ring_head *= 7; break;
	case 4: ring_head -= 11; break;
	case 5: ring[ring_head & 4095] = 13; break;
	case 6: ring_head <<= 1; break;
	case 7: ring_head >>= 2; break;
	case 8: return policies[nr % 3].verdict;
	default: return x64_sys_call(regs, nr);
	}
	return (long)ring[ring_head & 4095] + (long)policies[ring_head % 3].syscalls;
}

const char *policy_subject(int i) { return policies[i % 3].subject; }
