/* A small object to inject: arithmetic, a call into the guest kernel
 * resolved against its kallsyms, and writable data. */
extern unsigned long strlen(const char *s);

static long counter;

long secaas_add3(long a, long b)
{
	return a + b + 3;
}

long secaas_len(const char *s)
{
	return (long)strlen(s) + 1000;
}

long secaas_count(void)
{
	return ++counter;
}
