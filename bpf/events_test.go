package bpf

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// eventRecordBytes is what one event takes in the ring: the event and
// its 8-byte header, 8-aligned (POLC_EVENT_RECORD_BYTES).
var eventRecordBytes = (binary.Size(Event{}) + 8 + 7) &^ 7

// badHost is in the CIDR identity every policy of the test world denies.
const badHost = "203.0.113.5"

// TestEventWakeupBatched: the datapath wakes a reader waiting for events
// only when the ring's unread data reaches EventsWakeupBytes, not per
// event: a reader blocked without a deadline sees none of the first
// events, then all of them at once when the one that crosses the
// threshold is submitted.
func TestEventWakeupBatched(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	drop := tcp(badHost, epA.v4, 40000, 1, tcpSYN).bytes()
	below := EventsWakeupBytes / eventRecordBytes // the last event that stays below
	if below*eventRecordBytes >= EventsWakeupBytes {
		below--
	}
	got := make(chan time.Time, 2*below)
	go func() {
		var rec ringbuf.Record
		d.events.SetDeadline(time.Time{}) // blocks until a wake-up
		for d.events.ReadInto(&rec) == nil {
			got <- time.Now()
		}
	}()
	for range below {
		if ret := d.run(ProgEndpointIngress, drop); ret != actShot {
			t.Fatalf("verdict %d, want drop", ret)
		}
	}
	select {
	case <-got:
		t.Fatalf("the reader was woken before %d bytes were pending", EventsWakeupBytes)
	case <-time.After(300 * time.Millisecond):
	}
	d.run(ProgEndpointIngress, drop) // crosses the threshold: wakes the reader
	deadline := time.After(5 * time.Second)
	for n := 0; n < below+1; n++ {
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("the reader got %d of %d events after the wake-up", n, below+1)
		}
	}
}

// TestReadEventPolls: a single event, which wakes no reader, still
// reaches ReadEvent waiting without a deadline, within EventPoll (plus
// scheduling slack on a loaded machine) of its submission.
func TestReadEventPolls(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	drop := tcp(badHost, epA.v4, 40000, 1, tcpSYN).bytes()
	done := make(chan error, 1)
	waiting := make(chan struct{})
	go func() {
		var rec ringbuf.Record
		close(waiting)
		done <- ReadEvent(d.events, &rec, time.Time{})
	}()
	<-waiting
	time.Sleep(EventPoll / 2) // the reader is in its wait
	d.run(ProgEndpointIngress, drop)
	sent := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		late := time.Since(sent)
		t.Logf("read %v after its submission (EventPoll %v)", late, EventPoll)
		if late > EventPoll+time.Second {
			t.Errorf("event read %v after its submission, want within EventPoll (%v)", late, EventPoll)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadEvent did not return the event within 5 s")
	}
	// and a deadline ends the wait when nothing comes
	var rec ringbuf.Record
	if err := ReadEvent(d.events, &rec, time.Now().Add(EventPoll/2)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadEvent on an empty ring: %v, want a deadline error", err)
	}
}

// TestEventFloodCounted: during a flood of drops, in the kernel back to
// back, a reader (ReadEvent) gets every event the ring took, and every
// other one is counted lost: exactly once each. A flood the ring holds
// is read whole.
func TestEventFloodCounted(t *testing.T) {
	d := loadDatapathSpec(t, map[string]uint32{ConstGeneration: 1}, nil, 4096, func(s *ebpf.CollectionSpec) {
		s.Maps[MapEvents].MaxEntries = 1 << 20
	})
	setupWorld(d)
	d.setBinding(d.bindFor(ProgEndpointIngress, tcp(badHost, epA.v4, 1, 1, tcpSYN).bytes()))
	drop := tcp(badHost, epA.v4, 40000, 1, tcpSYN).bytes()
	capacity := (1 << 20) / eventRecordBytes
	for _, n := range []int{capacity - 100, 20 * capacity} {
		seen := make(chan int)
		stop := make(chan struct{})
		go func() {
			var rec ringbuf.Record
			count := 0
			for {
				err := ReadEvent(d.events, &rec, time.Now().Add(EventPoll))
				if err == nil {
					count++
					continue
				}
				select {
				case <-stop:
					seen <- count
					return
				default:
				}
			}
		}()
		lostBefore := d.eventsLost()
		if ret, _, err := d.coll.Programs[ProgEndpointIngress].Benchmark(drop, n, nil); err != nil || ret != actShot {
			t.Fatalf("flood: verdict %d, %v", ret, err)
		}
		// the reader drains the rest (it counts a record before it
		// reads on, and stops only on a read that found nothing)
		for end := time.Now().Add(10 * time.Second); d.events.AvailableBytes() > 0 && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		got := <-seen
		lost := int(d.eventsLost() - lostBefore)
		t.Logf("flood of %d: read %d, lost %d", n, got, lost)
		if got+lost != n {
			t.Errorf("flood of %d: read %d + lost %d != %d", n, got, lost, n)
		}
		if n < capacity && got != n {
			t.Errorf("flood of %d in a ring of %d: read %d, want all", n, capacity, got)
		}
	}
}

// eventsLost sums events_lost over CPUs.
func (d *datapath) eventsLost() uint64 {
	d.tb.Helper()
	var per []uint64
	if err := d.coll.Maps[MapEventsLost].Lookup(uint32(0), &per); err != nil {
		d.tb.Fatal(err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}
