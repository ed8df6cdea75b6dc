package runtime

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/compiler/bundle"
)

// Attachment records live in a pinned hash map of their own,
// NAME/attachments, one entry per attachment, rather than in the state's
// JSON: attaching or detaching one interface is then one map update,
// whatever the number of attachments (a node has thousands), and the
// state stays small. Each update is one syscall, so a kill cannot tear a
// record. readState reads them all into State.Attachments; the code that
// changes the attachments writes the records it changes (putAttachment,
// deleteAttachments) and writeState only the rest of the state.
const attachmentsFile = "attachments"

// Sizes of the attachments map: an entry's JSON (interface, link pin,
// endpoint name) fits in a record with room to spare.
const (
	attachmentRecordSize = 1024
	maxAttachments       = 65536
)

// attachmentKey identifies an attachment: a hook on an interface of a
// network namespace.
type attachmentKey struct {
	Netns   uint64
	Ifindex uint32
	Hook    uint32
}

func keyOf(a *Attachment) attachmentKey {
	h := uint32(0)
	switch a.Hook {
	case bundle.HookEndpointEgress:
		h = 1
	case bundle.HookEndpointIngress:
		h = 2
	case bundle.HookUplinkXDP:
		h = 3
	}
	return attachmentKey{Netns: a.Netns, Ifindex: uint32(a.Ifindex), Hook: h}
}

func (p pins) attachments() string { return filepath.Join(string(p), attachmentsFile) }

// createAttachments pins an empty attachments map for a new name.
func createAttachments(p pins) error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "polc_attach", Type: ebpf.Hash, KeySize: 16, ValueSize: attachmentRecordSize,
		MaxEntries: maxAttachments, Flags: bundle.MapFlagNoPrealloc,
	})
	if err != nil {
		return fmt.Errorf("create the attachments map: %w", err)
	}
	defer m.Close()
	return m.Pin(p.attachments())
}

func openAttachments(p pins) (*ebpf.Map, error) {
	m, err := ebpf.LoadPinnedMap(p.attachments(), nil)
	if err != nil {
		return nil, fmt.Errorf("open the attachments of %s: %w", p.dir(), err)
	}
	return m, nil
}

// putAttachment records a (a new one, or a change of one).
func putAttachment(p pins, a *Attachment) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if len(data) > attachmentRecordSize-4 {
		return fmt.Errorf("the record of %s on %s is too long (%d bytes)", a.Hook, a.Iface, len(data))
	}
	var rec [attachmentRecordSize]byte
	binary.LittleEndian.PutUint32(rec[:], uint32(len(data)))
	copy(rec[4:], data)
	m, err := openAttachments(p)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Update(keyOf(a), rec, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("record %s on %s: %w", a.Hook, a.Iface, err)
	}
	return nil
}

// deleteAttachments forgets the records of as (missing ones are fine).
func deleteAttachments(p pins, as ...Attachment) error {
	if len(as) == 0 {
		return nil
	}
	m, err := openAttachments(p)
	if err != nil {
		return err
	}
	defer m.Close()
	for i := range as {
		if err := m.Delete(keyOf(&as[i])); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget %s on %s: %w", as[i].Hook, as[i].Iface, err)
		}
	}
	return nil
}

// readAttachments reads every record (nil, no error, when the map does
// not exist: a state from before it, whose JSON holds them).
func readAttachments(p pins) ([]Attachment, error) {
	m, err := ebpf.LoadPinnedMap(p.attachments(), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the attachments of %s: %w", p.dir(), err)
	}
	defer m.Close()
	var out []Attachment
	var k attachmentKey
	var rec [attachmentRecordSize]byte
	it := m.Iterate()
	for it.Next(&k, &rec) {
		n := binary.LittleEndian.Uint32(rec[:])
		if n > attachmentRecordSize-4 {
			return nil, fmt.Errorf("attachments of %s: a corrupt record", p.dir())
		}
		var a Attachment
		if err := json.Unmarshal(rec[4:4+n], &a); err != nil {
			return nil, fmt.Errorf("attachments of %s: %w", p.dir(), err)
		}
		out = append(out, a)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read the attachments of %s: %w", p.dir(), err)
	}
	sortAttachments(out)
	return out, nil
}

// sortAttachments orders records by namespace, interface and hook, so that
// status lists them the same way every time.
func sortAttachments(as []Attachment) {
	slices.SortFunc(as, func(a, b Attachment) int {
		return cmp.Or(cmp.Compare(a.Netns, b.Netns), cmp.Compare(a.Iface, b.Iface), cmp.Compare(keyOf(&a).Hook, keyOf(&b).Hook))
	})
}
