/* R_X86_64_32: fits for a low address, overflows for a kernel address. */
	.text
	.globl low_entry
low_entry:
	movl	$low_symbol, %eax
	ret
