package lower

import (
	"errors"
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func TestCapacityErrors(t *testing.T) {
	cases := []struct {
		limits Limits
		want   CapacityError
	}{
		{Limits{bundle.MapPolicy: 37}, CapacityError{bundle.MapPolicy, 38, 37}},
		{Limits{bundle.MapIPCache4: 3}, CapacityError{bundle.MapIPCache4, 4, 3}},
		{Limits{bundle.MapIPCache4LPM: 2}, CapacityError{bundle.MapIPCache4LPM, 3, 2}},
		{Limits{bundle.MapPrefilter4: 0}, CapacityError{bundle.MapPrefilter4, 1, 0}},
	}
	for _, c := range cases {
		_, err := Build(quickstart(), nil, Options{Limits: c.limits})
		var ce *CapacityError
		if !errors.As(err, &ce) || *ce != c.want {
			t.Errorf("limits %v: error %v, want %+v", c.limits, err, c.want)
			continue
		}
		for _, s := range []string{c.want.Map, itoa(c.want.Count), "limit"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not mention %q", err, s)
			}
		}
	}
	if _, err := Build(quickstart(), nil, Options{Limits: Limits{bundle.MapPolicy: 38}}); err != nil {
		t.Errorf("exactly at the limit: %v", err)
	}
}

func TestCapacityRanges(t *testing.T) {
	prog := program([]*ir.Endpoint{ep("a", "app=a", "10.0.0.1")}, []policySpec{{name: "p", subject: sel("app=a"), rules: []ruleSpec{
		in(dsl.Allow, peers(peerAny), tcp(1, 65534)),
	}}})
	_, err := Build(prog, nil, Options{Limits: Limits{bundle.MapPolicyRanges: 29}})
	var ce *CapacityError
	if !errors.As(err, &ce) || *ce != (CapacityError{bundle.MapPolicyRanges, 30, 29}) {
		t.Errorf("got %v", err)
	}
}

func TestMaxEntries(t *testing.T) {
	var l Limits
	for _, c := range []struct {
		count int
		want  uint32
	}{{0, 16}, {1, 16}, {13, 16}, {14, 32}, {38, 64}, {1000, 2048}, {1 << 22, 1 << 22}, {(1 << 22) - 5, 1 << 22}} {
		if got := l.maxEntries(bundle.MapPolicy, c.count); got != c.want {
			t.Errorf("maxEntries(policy, %d) = %d, want %d", c.count, got, c.want)
		}
	}
}
