package bpf

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

const (
	xdpDrop = 1 // XDP_DROP
	xdpPass = 2 // XDP_PASS
)

func TestPrefilter(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	for _, p := range []string{"203.0.113.0/24", "2001:db8:bad::/48", "192.0.2.128/25"} {
		pf := netip.MustParsePrefix(p)
		var err error
		if pf.Addr().Is4() {
			err = d.coll.Maps[MapPrefilter4].Put(LPMKey4{uint32(pf.Bits()), pf.Addr().As4()}, uint32(1))
		} else {
			err = d.coll.Maps[MapPrefilter6].Put(LPMKey6{uint32(pf.Bits()), pf.Addr().As16()}, uint32(1))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	arp := tcp("203.0.113.1", "10.0.0.1", 1, 2, 0)
	arp.etherType = 0x0806
	cases := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"listed v4", udp("203.0.113.1", "10.0.0.1", 1, 2).bytes(), xdpDrop},
		{"listed v4 /25", udp("192.0.2.200", "10.0.0.1", 1, 2).bytes(), xdpDrop},
		{"beside /25", udp("192.0.2.100", "10.0.0.1", 1, 2).bytes(), xdpPass},
		{"other v4", udp("198.51.100.1", "10.0.0.1", 1, 2).bytes(), xdpPass},
		{"destination listed only", udp("198.51.100.1", "203.0.113.1", 1, 2).bytes(), xdpPass},
		{"listed v6", tcp("2001:db8:bad::1", "fd00::1", 1, 2, tcpSYN).bytes(), xdpDrop},
		{"other v6", tcp("2001:db8:bade::1", "fd00::1", 1, 2, tcpSYN).bytes(), xdpPass},
		{"non-IP", arp.bytes(), xdpPass},
	}
	drops, bytes := uint64(0), uint64(0)
	for _, c := range cases {
		got, err := d.coll.Programs[ProgPrefilter].Run(&ebpf.RunOptions{Data: c.frame})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
		if c.want == xdpDrop {
			drops++
			bytes += uint64(len(c.frame))
		}
	}
	if c := d.counter(RulePrefilterID); c.Packets != drops || c.Bytes != bytes {
		t.Errorf("prefilter counter %+v, want %d packets %d bytes", c, drops, bytes)
	}
	d.noEvent()
}
