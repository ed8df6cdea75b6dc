package bpf

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
)

// TestContentSlotsSwitchTogether: the content maps' two slots hold two
// policies that differ in A's identity — its ipcache entry and the policy
// entries about it both change — so a packet that read one map of one
// slot and another of the other would meet A's default deny. Before a
// generation switch packets get slot 0's verdict, after it slot 1's;
// while another CPU flips the generation as fast as it can, every packet
// gets one slot's whole answer: its rule, its subject identity and the
// generation in its event agree.
func TestContentSlotsSwitchTogether(t *testing.T) {
	c := testConsts()
	c[ConstGeneration] = 0
	c[ConstCTLifetimeTCP] = 0 // every packet a new flow: it meets policy
	d := loadDatapath(t, c, nil)
	setupWorld(d)
	const idA2, rule2 = 0x7000, 40
	// slot 1: slot 0 with A renamed idA2, and A's rule 16 renumbered
	for _, n := range ContentMaps {
		src, dst := d.coll.Maps[n], d.coll.Maps[n+"/1"]
		k, v := make([]byte, src.KeySize()), make([]byte, src.ValueSize())
		it := src.Iterate()
		for it.Next(&k, &v) {
			switch n {
			case MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM:
				if le32(v[0:4]) == idA {
					put32(v[0:4], idA2)
				}
			case MapPolicy:
				if le32(k[0:4]) == idA {
					put32(k[0:4], idA2)
				}
				if le32(v[4:8]) == 16 {
					put32(v[4:8], rule2)
				}
			case MapPolicyRanges:
				// big-endian subject
				if k[4] == 0 && k[5] == 0 && uint32(k[6])<<8|uint32(k[7]) == idA {
					k[6], k[7] = byte(uint32(idA2)>>8), byte(uint32(idA2)&0xff)
				}
			}
			if err := dst.Put(k, v); err != nil {
				t.Fatalf("%s slot 1: %v", n, err)
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	gen := d.coll.Maps[MapGeneration]
	setGen := func(g uint32) {
		if err := gen.Put(uint32(0), g); err != nil {
			t.Fatal(err)
		}
	}
	sport := uint16(20000)
	packet := func() (uint32, Event) {
		sport++
		ret := d.run(ProgEndpointIngress, tcp(epB.v4, epA.v4, sport, 80, tcpSYN).bytes())
		return ret, d.event()
	}
	for g, want := range map[uint32]struct{ rule, subject uint32 }{0: {16, idA}, 1: {rule2, idA2}, 2: {16, idA}} {
		setGen(g)
		if act, e := packet(); act != actOK || e.Rule != want.rule || e.Subject != want.subject || e.Generation != g {
			t.Errorf("generation %d: act %d, event %+v; want rule %d, subject %d", g, act, e, want.rule, want.subject)
		}
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var flips atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		m, err := gen.Clone()
		if err != nil {
			t.Error(err)
			return
		}
		defer m.Close()
		for g := uint32(3); !stop.Load(); g++ {
			if err := m.Update(uint32(0), g, ebpf.UpdateExist); err != nil {
				t.Error(err)
				return
			}
			flips.Add(1)
		}
	}()
	seen := map[uint32]int{}
	for i := 0; i < 4000 && !t.Failed(); i++ {
		act, e := packet()
		want := map[uint32]uint32{0: 16, 1: rule2}[e.Generation&1]
		subject := map[uint32]uint32{0: idA, 1: idA2}[e.Generation&1]
		if act != actOK || e.Rule != want || e.Subject != subject {
			t.Errorf("packet %d under flips: act %d, event %+v (a mix of two slots)", i, act, e)
		}
		seen[e.Rule]++
	}
	stop.Store(true)
	wg.Wait()
	if seen[16] == 0 || seen[rule2] == 0 {
		t.Errorf("the flips were not seen: %v (%d flips)", seen, flips.Load())
	}
	t.Logf("rules seen %v over %d generation flips", seen, flips.Load())
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
