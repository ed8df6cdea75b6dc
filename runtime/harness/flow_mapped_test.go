package harness_test

import (
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/harness"
)

// A flow must not end up with one IPv4 and one IPv6 address: IPv4-mapped
// and zoned addresses are refused with a message that says what to write.
func TestParseFlowRefusesMappedAndZonedAddresses(t *testing.T) {
	prog := &ir.Program{}
	cases := map[string]string{
		"tcp [::ffff:10.0.1.10]:1 -> 10.0.2.10:80": "write the IPv4 address 10.0.1.10",
		"tcp [fd00::1]:1 -> [::ffff:10.0.2.10]:80": "IPv4-mapped addresses are not supported",
		"tcp [fe80::1%eth0]:1 -> [fe80::2]:80":     "zone",
	}
	for flow, want := range cases {
		_, err := harness.ParseFlow(prog, flow)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFlow(%q) = %v, want an error containing %q", flow, err, want)
		}
	}
	if _, err := harness.ParseFlow(prog, "tcp [fd00::1]:1 -> [fd00::2]:80"); err != nil {
		t.Errorf("a plain IPv6 flow: %v", err)
	}
}
