/* Architecture-neutral stand-in for <asm/types.h>: BPF objects do not depend on the build host's architecture. */
#include <asm-generic/types.h>
