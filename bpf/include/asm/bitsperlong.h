/* Architecture-neutral stand-in for <asm/bitsperlong.h>: BPF objects do not depend on the build host's architecture. */
#include <asm-generic/bitsperlong.h>
