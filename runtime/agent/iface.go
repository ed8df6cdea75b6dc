package agent

import (
	"fmt"
	"net"
	"path"

	"github.com/vishvananda/netlink"
)

// IfaceFinder finds the host-side interface of the pod at addr, in the
// network namespace of the calling thread (the host's).
type IfaceFinder interface {
	Find(addr string) (string, error)
}

// RouteIface finds a pod's interface by the route the host takes to the
// pod's address (netlink RouteGet, as `ip route get ADDR`): routed CNIs
// (Calico, the CNI ptp plugin, Cilium with per-endpoint routes) install a
// route to each pod address through its host-side veth. The route must be
// direct (no gateway: the pod is on this host) and its device a veth, so
// that a pod the host reaches through another hop — the default route, an
// overlay device, a bridge — is never confused with its interface and
// nothing is attached to an uplink. Pattern, when set, replaces the veth
// check with a glob the interface name must match (`cali*`, `lxc*`): for
// CNIs whose pod devices are not veths (netkit).
type RouteIface struct {
	Pattern string
}

// Find implements IfaceFinder.
func (r RouteIface) Find(addr string) (string, error) {
	ip := net.ParseIP(addr)
	if ip == nil {
		return "", fmt.Errorf("pod address %q is not an IP address", addr)
	}
	routes, err := netlink.RouteGet(ip)
	if err != nil {
		return "", fmt.Errorf("route to %s: %w", addr, err)
	}
	for _, rt := range routes {
		if rt.Gw != nil || rt.LinkIndex == 0 {
			continue
		}
		l, err := netlink.LinkByIndex(rt.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("interface %d of the route to %s: %w", rt.LinkIndex, addr, err)
		}
		name := l.Attrs().Name
		if r.Pattern != "" {
			if ok, _ := path.Match(r.Pattern, name); ok {
				return name, nil
			}
			return "", fmt.Errorf("the route to %s leaves by %s, which does not match --iface-pattern %q", addr, name, r.Pattern)
		}
		if l.Type() != "veth" {
			return "", fmt.Errorf("the route to %s leaves by %s, a %s, not a pod's veth (see --iface-pattern)", addr, name, l.Type())
		}
		return name, nil
	}
	return "", fmt.Errorf("no direct route to %s on this host (the pod's interface is not up yet, or the CNI does not route pods by their veth)", addr)
}
