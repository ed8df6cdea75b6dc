package bpf

import (
	"math/rand/v2"
	"testing"

	"github.com/cilium/ebpf"
)

// TestRandomFrames mutates and cuts valid frames at random: whatever the
// bytes, the program returns pass or drop, and its event agrees with the
// action and names a rule.
func TestRandomFrames(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	seeds := [][]byte{
		tcp(epB.v4, epA.v4, 40000, 80, tcpSYN).bytes(),
		udp(epB.v6, epA.v6, 40000, 53).bytes(),
		sctp(world.v4, epA.v4, 1, 2).bytes(),
		echoRequest(world.v6, epA.v6, 7).bytes(),
		func() []byte {
			p := icmp(far.v4, epA.v4, 3, 1, 0)
			p.payload = tcp(epA.v4, world.v4, 1, 2, tcpSYN).ip()
			return p.bytes()
		}(),
		func() []byte {
			p := icmp(far.v6, epA.v6, 1, 3, 0)
			p.payload = udp(epA.v6, world.v6, 1, 2).ip()
			return p.bytes()
		}(),
		func() []byte {
			p := udp(epB.v6, epA.v6, 5, 53)
			p.ipv6Ext = []uint8{0, 60}
			p.fragID, p.moreFrags = 9, true
			return p.bytes()
		}(),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ran := 0
	for i := range 3000 {
		seed := seeds[rng.IntN(len(seeds))]
		f := append([]byte{}, seed...)
		for range 1 + rng.IntN(4) {
			// mutate headers more than payload
			pos := 12 + rng.IntN(min(len(f)-12, 70))
			f[pos] = byte(rng.UintN(256))
		}
		if rng.IntN(3) == 0 {
			f = f[:14+rng.IntN(len(f)-14)]
		}
		act, err := d.coll.Programs[ProgEndpointIngress].Run(&ebpf.RunOptions{Data: f})
		if err != nil {
			continue // the kernel refused the frame (IP header cut)
		}
		ran++
		e := d.event()
		if act != actOK && act != actShot {
			t.Fatalf("frame %d %x: action %d", i, f, act)
		}
		if (act == actOK) != (e.Verdict == VerdictAllow) || e.Rule == 0 {
			t.Fatalf("frame %d %x: action %d, event %+v", i, f, act, e)
		}
	}
	t.Logf("%d of 3000 frames ran", ran)
	if ran < 2000 {
		t.Errorf("only %d of 3000 frames ran", ran)
	}
}
