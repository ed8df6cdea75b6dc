package bench

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
)

func TestFramesAreValidUDP(t *testing.T) {
	src, dst := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	f := BuildFrames(src, dst, NewFlows(10, 3), 10)
	for i := range f.Len() {
		b := f.Frame(i)
		if len(b) != FrameLen || !bytes.Equal(b[0:6], dst) || !bytes.Equal(b[6:12], src) {
			t.Fatalf("frame %d: bad Ethernet header % x", i, b[:14])
		}
		if ipChecksum(b[14:34]) != 0 {
			t.Errorf("frame %d: IPv4 header checksum does not verify", i)
		}
		if got := binary.BigEndian.Uint16(b[16:]); int(got) != FrameLen-14 {
			t.Errorf("frame %d: total length %d", i, got)
		}
		if got := binary.BigEndian.Uint16(b[36:]); got != SinkPort {
			t.Errorf("frame %d: destination port %d", i, got)
		}
	}
}

func TestNewFlowsNeverRepeat(t *testing.T) {
	seen := map[Flow]int{}
	for seq := range 4 {
		for _, f := range NewFlows(10000, seq) {
			if prev, dup := seen[f]; dup {
				t.Fatalf("flow %v in batches %d and %d", f, prev, seq)
			}
			if !FlowNet.Contains(f.Src) || f.Sport == EstablishedSport {
				t.Fatalf("flow %v outside the new-flow space", f)
			}
			seen[f] = seq
		}
	}
	for _, f := range DeniedFlows(256) {
		if FlowNet.Contains(f.Src) {
			t.Fatalf("denied flow %v is allowed by the ruleset", f)
		}
	}
}

func TestRulesetRenderings(t *testing.T) {
	rs := Ruleset{N: 5}
	for name, text := range map[string][]byte{
		"policy": rs.Policy(), "iptables": rs.IPTablesLinear(), "ipset": rs.IPSet(), "nft": rs.NftLinear(), "nft-set": rs.NftSet(),
	} {
		s := string(text)
		if !strings.Contains(s, "10.99.0.0/20") || !strings.Contains(s, "10.100.0.3") || strings.Contains(s, "10.100.0.4") {
			t.Errorf("%s: want sources 10.100.0.0–10.100.0.3 and 10.99.0.0/20:\n%s", name, s)
		}
	}
	if got := strings.Count(string(rs.IPTablesLinear()), "--dport 5000 -j ACCEPT"); got != 5 {
		t.Errorf("iptables: %d rules, want 5", got)
	}
	if got := strings.Count(string(rs.Policy()), "ingress allow"); got != 5 {
		t.Errorf("policy: %d rules, want 5", got)
	}
}
