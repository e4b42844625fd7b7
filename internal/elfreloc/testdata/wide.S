/* Relocation types gcc rarely emits from C: PC64 and a 64-bit absolute
 * with an addend, a PC32 into another section. */
	.text
	.globl wide_entry
wide_entry:
	leaq	table(%rip), %rax
	movq	kernel_base+16(%rip), %rdx
	call	x64_sys_call
	ret
	.data
	.balign 16
table:
	.quad	kernel_base + 0x40
	.quad	wide_entry - .
	.quad	x64_sys_call - table
	.long	wide_entry - .
