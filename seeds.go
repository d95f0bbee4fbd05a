package hearsay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// seedLookupTimeout bounds one round of seed name resolution.
const seedLookupTimeout = 5 * time.Second

// resolveSeeds turns seed addresses into gossip addresses. A host:port whose
// host is an IP address is kept as is; a DNS name is replaced by every
// address it resolves to, each with the port, so that a name standing for
// several nodes (a Kubernetes headless service) gives a seed per node. The
// result is sorted and without duplicates. Seeds that fail to resolve are
// reported in the error, joined, alongside whatever did resolve.
func resolveSeeds(ctx context.Context, r *net.Resolver, seeds []string) ([]string, error) {
	var out []string
	var errs []error
	for _, s := range seeds {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %q: %w", s, err))
			continue
		}
		if net.ParseIP(host) != nil {
			out = append(out, s)
			continue
		}
		ips, err := r.LookupHost(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %q: %w", s, err))
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), errors.Join(errs...)
}

// hasSeedNames reports whether any seed names a host rather than an IP
// address, and so may resolve differently later.
func hasSeedNames(seeds []string) bool {
	for _, s := range seeds {
		if host, _, err := net.SplitHostPort(s); err == nil && net.ParseIP(host) == nil {
			return true
		}
	}
	return false
}

// seedAddrs resolves seeds for a join: the resolved addresses, or, for
// seeds that do not resolve yet, the seeds as given, which the transport
// will try to resolve on each send.
func (n *Node) seedAddrs(ctx context.Context, seeds []string) []string {
	ctx, cancel := context.WithTimeout(ctx, seedLookupTimeout)
	defer cancel()
	addrs, err := resolveSeeds(ctx, net.DefaultResolver, seeds)
	if err != nil {
		n.log.Warn("seed addresses do not all resolve; will retry", "seeds", seeds, "err", err)
	}
	if len(addrs) == 0 {
		return slices.Clone(seeds)
	}
	return addrs
}

// keepResolvingSeeds re-resolves seed names, with backoff, until the node
// has joined or closes, and hands new addresses to the engine's join
// retries: the pods behind a DNS name may not all be up, or even listed,
// when this node starts.
func (n *Node) keepResolvingSeeds(seeds []string, last []string) {
	mc := n.cfg.Protocol.Membership
	wait := max(mc.JoinRetryMin, 100*time.Millisecond)
	for {
		t := time.NewTimer(wait)
		select {
		case <-n.closing:
			t.Stop()
			return
		case <-t.C:
		}
		if s := n.view.Load(); s != nil && s.joined {
			return
		}
		addrs := n.seedAddrs(context.Background(), seeds)
		if !slices.Equal(addrs, last) {
			n.log.Info("seed addresses changed", "seeds", seeds, "addrs", addrs)
			if _, err := n.do(context.Background(), request{seeds: addrs}); err != nil {
				return
			}
			last = addrs
		}
		wait = min(2*wait, max(mc.JoinRetryMax, wait))
	}
}
