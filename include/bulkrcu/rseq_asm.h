/* bulkrcu/rseq_asm.h: private. The parts every bulkrcu restartable sequence (rseq(2)) shares,
 * for the inline fast paths of rcu.h, page_pool.h and cache.h and the library's own sequences
 * (src/percpu/percpu.h). x86-64, GCC or Clang; names and layout may change.
 *
 * BULKRCU__RSEQ_START emits the sequence's descriptor (struct rseq_cs: version 0, flags 0,
 * start at label 1, post-commit offset to label 2, abort at label 4) into section __rseq_cs,
 * arms it (its address into the rseq area's rseq_cs field, %fs:8 past the operand [off], which
 * holds glibc's __rseq_offset) and loads the CPU number (cpu_id, %fs:4 past [off]) into %eax,
 * clobbering %rax. The sequence body follows: it finds its slot from %rax and ends with its one
 * commit store, then BULKRCU__RSEQ_END: label 2 and the abort handler (out of line, in section
 * __rseq_failure), preceded by the signature RSEQ_SIG (0x53053053) as the operand of a ud1, so
 * that a disassembler shows an instruction; the handler restarts the sequence from label 0. */
#ifndef BULKRCU_RSEQ_ASM_H
#define BULKRCU_RSEQ_ASM_H

#define BULKRCU__RSEQ_START            \
  ".pushsection __rseq_cs, \"aw\"\n\t" \
  ".balign 32\n\t"                     \
  "333:\n\t"                           \
  ".long 0x0, 0x0\n\t"                 \
  ".quad 1f, (2f - 1f), 4f\n\t"        \
  ".popsection\n\t"                    \
  "0:\n\t"                             \
  "leaq 333b(%%rip), %%rax\n\t"        \
  "movq %%rax, %%fs:8(%[off])\n\t"     \
  "1:\n\t"                             \
  "movl %%fs:4(%[off]), %%eax\n\t"

#define BULKRCU__RSEQ_END                   \
  "2:\n\t"                                  \
  ".pushsection __rseq_failure, \"ax\"\n\t" \
  ".byte 0x0f, 0xb9, 0x3d\n\t"              \
  ".long 0x53053053\n\t"                    \
  "4:\n\t"                                  \
  "jmp 0b\n\t"                              \
  ".popsection\n\t"

#endif /* BULKRCU_RSEQ_ASM_H */
