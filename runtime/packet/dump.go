package packet

import (
	"fmt"
	"strings"
)

// Dump formats a frame as hex, 16 bytes a line with the offset first, for
// golden files and for showing what the harness sent.
func Dump(frame []byte) string {
	var b strings.Builder
	for off := 0; off < len(frame); off += 16 {
		fmt.Fprintf(&b, "%04x ", off)
		for i, c := range frame[off:min(off+16, len(frame))] {
			if i == 8 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, " %02x", c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
