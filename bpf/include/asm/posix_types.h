/* Architecture-neutral stand-in for <asm/posix_types.h>: BPF objects do not depend on the build host's architecture. */
#include <asm-generic/posix_types.h>
