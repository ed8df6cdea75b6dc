package bpf

import (
	"errors"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// EventPoll bounds how late a reader of MapEvents sees an event. The
// datapath submits events without waking the reader, except once per
// EventsWakeupBytes of unread data (bpf/verdict.h), so that a flood of
// drops does not pay a wake-up per packet; a reader therefore looks at
// the ring at least every EventPoll while it waits (ReadEvent). A quiet
// ring's event is read within EventPoll of its submission, a busy ring's
// as soon as about 230 events are pending.
const EventPoll = 100 * time.Millisecond

// EventsWakeupBytes is POLC_EVENTS_WAKEUP_BYTES: each time the ring's
// unread data reaches a multiple of it, the event that crossed it wakes
// the reader.
const EventsWakeupBytes = 16 << 10

// ReadEvent reads the next record of an events ring into rec, waiting
// until deadline at the most (os.ErrDeadlineExceeded then; the zero
// deadline waits for ever), and looking at the ring at least every
// EventPoll meanwhile (events come without a wake-up). It changes rd's
// deadline.
func ReadEvent(rd *ringbuf.Reader, rec *ringbuf.Record, deadline time.Time) error {
	for {
		poll := time.Now().Add(EventPoll)
		last := !deadline.IsZero() && !deadline.After(poll)
		if last {
			poll = deadline
		}
		rd.SetDeadline(poll)
		err := rd.ReadInto(rec)
		if err == nil || last || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
}
