package bundle

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/polc-dev/polc/bpf"
)

// sample builds a small bundle by hand.
func sample(t *testing.T) *Bundle {
	t.Helper()
	recs := map[string][]byte{}
	recs[MapIPCache4] = AppendIPCacheHost(nil, netip.MustParseAddr("10.0.0.2"), bpf.IPCacheValue{Identity: 300, Flags: bpf.IPCacheLocal})
	recs[MapIPCache4] = AppendIPCacheHost(recs[MapIPCache4], netip.MustParseAddr("10.0.0.1"), bpf.IPCacheValue{Identity: 256, Flags: bpf.IPCacheLocal | bpf.IPCacheIngressIsolated})
	recs[MapIPCache6LPM] = AppendIPCacheLPM(nil, netip.MustParsePrefix("fd00::/64"), bpf.IPCacheValue{Identity: 400})
	recs[MapPolicy] = AppendPolicy(nil, bpf.PolicyKey{Subject: 256, Remote: 300, Port: 80, Proto: 6}, bpf.PolicyValue{Verdict: bpf.VerdictAllow, Rule: 16, Order: bpf.OrderAllow | 16})
	recs[MapPolicy] = AppendPolicy(recs[MapPolicy], bpf.PolicyKey{Subject: 256, Remote: 0, Proto: 0, Flags: bpf.PolicyAnyPort}, bpf.PolicyValue{Verdict: bpf.VerdictDeny, Rule: 17, Order: 17})
	recs[MapPolicy] = AppendPolicy(recs[MapPolicy], bpf.PolicyKey{Subject: 256, Remote: 300, Proto: 17, Port: 53, Flags: bpf.PolicyEgress},
		bpf.PolicyValue{Verdict: bpf.VerdictPass, Tier: bpf.TierBaseline, Rule: 20, Order: 2, AdminVerdict: bpf.VerdictDeny, AdminRule: 19, AdminOrder: 1})
	recs[MapPolicyRanges] = AppendPolicyRange(nil, bpf.PolicyRangeKey{Prefixlen: 92, Subject: [4]byte{0, 0, 1, 0}, Remote: [4]byte{0, 0, 0, 1}, Proto: 6, Port: [2]byte{0x1f, 0x40}}, bpf.PolicyValue{Verdict: bpf.VerdictAllow, Rule: 18, Order: bpf.OrderAllow | 18})
	recs[MapPrefilter4] = AppendPrefilter(nil, netip.MustParsePrefix("203.0.113.0/24"))
	b := &Bundle{
		Manifest: Manifest{
			Compiler:  "test",
			Sources:   []Source{{Path: "a.pol", SHA256: strings.Repeat("ab", 32)}},
			Programs:  []Program{{Name: "tc_endpoint_egress", Hooks: []string{HookEndpointEgress}}},
			TailCalls: TailCalls{Map: "tailcalls", Size: 8, Slots: []Slot{{0, "tc_policy4"}}},
			Constants: []Constant{{Name: "cfg_has_ipv4", Size: 4, Value: 1}},
		},
		Object:     []byte("\x7fELF"),
		Identities: []Identity{{ID: 1, Kind: IdentityWorld}, {ID: 256, Kind: IdentityEndpoint, Labels: []string{"app=a"}, Endpoints: []string{"a"}}},
		Rules:      []Rule{{ID: 2, Name: "default-deny"}, {ID: 16, File: "a.pol", Line: 3, Col: 1, Policy: "p", Text: "ingress allow"}},
	}
	for _, name := range MapNames {
		m, err := NewMap(name, recs[name])
		if err != nil {
			t.Fatal(err)
		}
		m.MaxEntries = 16
		b.Maps = append(b.Maps, m)
	}
	return b
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bundle")
	b := sample(t)
	if err := Write(dir, b); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "bundle.tar")
	var buf bytes.Buffer
	if err := WriteTar(&buf, b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, tarPath} {
		got, err := Read(p)
		if err != nil {
			t.Fatalf("Read(%s): %v", p, err)
		}
		if d := cmp.Diff(b, got, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("Read(%s) differs from what was written (-wrote +read):\n%s", p, d)
		}
		if got.Text() != b.Text() {
			t.Errorf("dumps differ")
		}
	}
	// Writing again over the bundle is allowed and gives the same bytes.
	if err := Write(dir, b); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := WriteTar(&again, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two tars of one bundle differ")
	}
}

func TestWriteRefusesForeignDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, sample(t)); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("Write into a non-bundle directory: %v", err)
	}
}

func TestReadDetectsCorruption(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(dir string) error
		want   string
	}{
		{"map bytes", func(dir string) error { return flipByte(filepath.Join(dir, "maps/policy.bin")) }, "map policy: maps/policy.bin has SHA-256"},
		{"object", func(dir string) error { return flipByte(filepath.Join(dir, ObjectFile)) }, "object: polc.bpf.o has SHA-256"},
		{"rules", func(dir string) error { return flipByte(filepath.Join(dir, RulesFile)) }, "rules: rules.json has SHA-256"},
		{"missing map", func(dir string) error { return os.Remove(filepath.Join(dir, "maps/ipcache4.bin")) }, "ipcache4.bin"},
		{"manifest digest", func(dir string) error {
			return editManifest(dir, func(s string) string {
				i := strings.Index(s, `"object"`)
				i += strings.Index(s[i:], `"sha256": "`) + len(`"sha256": "`)
				return s[:i] + "00" + s[i+2:]
			})
		}, "object: polc.bpf.o has SHA-256"},
		{"source digest", func(dir string) error {
			return editManifest(dir, func(s string) string { return strings.Replace(s, `"a.pol"`, `"b.pol"`, 1) })
		}, "source digest"},
		{"entries over max", func(dir string) error {
			return editManifest(dir, func(s string) string { return strings.ReplaceAll(s, `"max_entries": 16`, `"max_entries": 1`) })
		}, "exceed max_entries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, sample(t)); err != nil {
				t.Fatal(err)
			}
			if err := c.mutate(dir); err != nil {
				t.Fatal(err)
			}
			_, err := Read(dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Read: %v, want ErrCorrupt mentioning %q", err, c.want)
			}
		})
	}
}

func TestVerifyOrder(t *testing.T) {
	b := sample(t)
	m := b.Map(MapPolicy)
	n := m.KeySize + m.ValueSize
	m.Data = append(slices.Clone(m.Data[n:2*n]), m.Data[:n]...) // swap the two records
	m.SHA256 = Digest(m.Data)
	if _, err := b.Files(); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err == nil || !strings.Contains(err.Error(), "increasing key order") {
		t.Errorf("Verify of unsorted records: %v", err)
	}
}

func TestNewMapSortsAndRejectsDuplicates(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{MapPolicy, MapPolicyRanges, MapIPCache4, MapIPCache6LPM} {
		spec, _ := Spec(name)
		n := spec.KeySize + spec.ValueSize
		seen := map[string]bool{}
		var data []byte
		alphabet := 3 // few values per byte: many shared prefixes
		if spec.KeySize < 8 {
			alphabet = 256
		}
		for len(seen) < 5000 {
			rec := make([]byte, n)
			for i := range rec {
				rec[i] = byte(r.IntN(alphabet))
			}
			if seen[string(rec[:spec.KeySize])] {
				continue
			}
			seen[string(rec[:spec.KeySize])] = true
			data = append(data, rec...)
		}
		m, err := NewMap(name, slices.Clone(data))
		if err != nil {
			t.Fatal(err)
		}
		var want [][]byte
		for i := 0; i < len(data); i += n {
			want = append(want, data[i:i+n])
		}
		slices.SortFunc(want, bytes.Compare)
		if !bytes.Equal(bytes.Join(want, nil), m.Data) {
			t.Errorf("%s: records not sorted by key bytes", name)
		}
		if _, err := NewMap(name, append(slices.Clone(data), data[:n]...)); err == nil {
			t.Errorf("%s: duplicate key accepted", name)
		}
	}
}

func TestDecode(t *testing.T) {
	d := sample(t).Decode()
	want := []PolicyRow{
		{Subject: 256, Dir: "egress", Remote: 300, Proto: 17, Lo: 53, Hi: 53, Verdict: "pass", Rule: 20, Tier: "baseline", Rank: 2,
			Admin: &AdminSlot{Verdict: "deny", Rule: 19, Rank: 1}},
		{Subject: 256, Dir: "ingress", Remote: 0, Proto: 0, Lo: 0, Hi: 65535, AnyPort: true, Verdict: "deny", Rule: 17},
		{Subject: 256, Dir: "ingress", Remote: 300, Proto: 6, Lo: 80, Hi: 80, Verdict: "allow", Rule: 16},
	}
	if diff := cmp.Diff(want, d.Policy); diff != "" {
		t.Errorf("policy rows (-want +got):\n%s", diff)
	}
	if r := d.PolicyRanges; len(r) != 1 || r[0].Lo != 8000 || r[0].Hi != 8015 || r[0].Remote != 1 || r[0].Subject != 256 {
		t.Errorf("range rows %+v", r)
	}
	if r := d.IPCache; len(r) != 3 || r[0].Prefix != "10.0.0.1" || r[2].Prefix != "fd00::/64" {
		t.Errorf("ipcache rows %+v", r)
	}
}

func flipByte(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	data[len(data)/2] ^= 0xff
	return os.WriteFile(path, data, 0o644)
}

func editManifest(dir string, edit func(string) string) error {
	p := filepath.Join(dir, ManifestFile)
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return os.WriteFile(p, []byte(edit(string(data))), 0o644)
}

// marshalRules writes what encoding/json would.
func TestMarshalRulesMatchesJSON(t *testing.T) {
	rules := []Rule{
		{ID: 1, Name: "default-allow", Verdict: "allow"},
		{ID: 16, File: "a b/c.pol", Line: 3, Col: 7, Policy: "p-1", Text: `ingress allow from "x" \ <y> & z` + "\t\n\x01 é \u2028 \xff", Verdict: "deny"},
		{ID: 17},
		{ID: 18, Policy: "guard", Verdict: "pass", Tier: "admin", Priority: new(int), Rank: 1},
		{ID: 19, Policy: "defaults", Verdict: "deny", Tier: "baseline", Priority: func() *int { p := 1000; return &p }(), Rank: 2},
	}
	want, err := marshalLines(rules)
	if err != nil {
		t.Fatal(err)
	}
	if got := marshalRules(rules); !bytes.Equal(got, want) {
		t.Errorf("marshalRules:\n%s\nencoding/json:\n%s", got, want)
	}
}
