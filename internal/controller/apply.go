package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"secaas/internal/node"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

// DomainChange is what applying a policy does to one domain.
type DomainChange struct {
	TID    int            `json:"tid"`
	Name   string         `json:"name"`
	Action string         `json:"action"` // created, replaced or unchanged
	Before *tenant.Domain `json:"before,omitempty"`
	After  *tenant.Domain `json:"after,omitempty"`
}

// ApplyPlan is the outcome of ApplyPolicy.
type ApplyPlan struct {
	DryRun  bool           `json:"dry_run"`
	Changed bool           `json:"changed"`
	Domains []DomainChange `json:"domains"`
	// The switch's flows that would go and come (dry run) or went and
	// came; absent when the node cannot plan.
	FlowsRemoved []string `json:"flows_removed,omitempty"`
	FlowsAdded   []string `json:"flows_added,omitempty"`
	FlowsPlanned bool     `json:"flows_planned"`
	// FlowsUnplanned names the hosts whose agent did not answer: their
	// flows are not in the lists (the change itself does not wait on it).
	FlowsUnplanned []string `json:"flows_unplanned,omitempty"`
}

// errDryRun rolls a dry run's transaction back.
var errDryRun = errors.New("dry run")

// ApplyPolicy makes the caller's domains what the policy says, all or
// nothing: every domain of the policy is created or replaced in one
// transaction, published to the hosts as one generation, or none is. A domain already as the
// policy says is left alone (no write, no event), so applying the same
// policy twice changes nothing the second time. Fields the store fills in
// (VM UUIDs, ACR ids, the tenant, the revision) are matched, not compared.
// Domains the policy does not name are kept. With dryRun nothing is
// written; the plan says what would change, in the store and on the
// switch.
func (c *Controller) ApplyPolicy(ctx context.Context, who Caller, domains []tenant.Domain, dryRun bool) (ApplyPlan, error) {
	plan := ApplyPlan{DryRun: dryRun, Domains: []DomainChange{}}
	if len(domains) == 0 {
		return plan, invalid("the policy has no domains")
	}
	seen := map[int]bool{}
	for _, d := range domains {
		if seen[d.TID] {
			return plan, invalid("tid %d appears twice in the policy", d.TID)
		}
		seen[d.TID] = true
		if !who.Admin && d.Tenant != "" && d.Tenant != who.Tenant {
			return plan, invalid("tenant %q: a tenant token applies only its own domains", d.Tenant)
		}
		if who.Admin && d.Tenant == "" {
			return plan, invalid("domain %d: tenant is required (admin token)", d.TID)
		}
	}
	// A first pass computes the new state and rolls back; the hosts it
	// changes plan their flows outside any transaction; then, unless this
	// is a dry run, the change runs for real.
	var after state
	planning := true
	change := func(tx *store.Tx, st *state) (bool, error) {
		plan.Domains = plan.Domains[:0]
		var changed []tenant.Domain
		for _, want := range domains {
			if !who.Admin {
				want.Tenant = who.Tenant
			}
			i := slices.IndexFunc(st.all, func(x tenant.Domain) bool { return x.TID == want.TID })
			ch := DomainChange{TID: want.TID, Name: want.Name}
			if i < 0 {
				fillIDs(&want)
				want.Revision = 0
				st.all = append(st.all, want)
				ch.Action, ch.After = "created", &want
			} else {
				have := st.all[i]
				if !owns(who, have) {
					return false, fmt.Errorf("domain %d: %w", want.TID, ErrNotFound)
				}
				if have.Tenant != want.Tenant {
					return false, invalid("domain %d: a domain cannot change tenant", want.TID)
				}
				adopt(&want, have)
				if sameDomain(want, have) {
					ch.Action = "unchanged"
					plan.Domains = append(plan.Domains, ch)
					continue
				}
				before := have
				st.all[i] = want
				ch.Action, ch.Before, ch.After = "replaced", &before, &want
			}
			changed = append(changed, want)
			plan.Domains = append(plan.Domains, ch)
		}
		if len(changed) == 0 {
			return false, nil
		}
		plan.Changed = true
		if _, err := tenant.NewNet(st.all); err != nil {
			return false, scopeError(who, changed[0], err)
		}
		for _, d := range changed {
			if err := c.check(who, d, st.ports); err != nil {
				return false, err
			}
		}
		if planning {
			after = *st
			return false, errDryRun
		}
		for k := range plan.Domains {
			ch := &plan.Domains[k]
			if ch.Action == "unchanged" {
				continue
			}
			rev, err := tx.PutDomain(*ch.After)
			if err != nil {
				return false, err
			}
			ch.After.Revision = rev
			kind := "domain.created"
			if ch.Action == "replaced" {
				kind = "domain.replaced"
			}
			if _, err := tx.AddEvent(store.Event{Tenant: ch.After.Tenant, Kind: kind, Subject: fmt.Sprintf("domain/%d", ch.TID), Detail: "apply"}); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	if err := c.transact(ctx, change); !errors.Is(err, errDryRun) {
		return plan, err
	}
	if plan.Changed {
		if err := c.planFlows(ctx, after, &plan); err != nil {
			return plan, err
		}
	}
	if dryRun || !plan.Changed {
		return plan, nil
	}
	planning = false
	return plan, c.transact(ctx, change)
}

// planFlows asks each host whose desired state st changes which flows
// it would remove and add (lines prefixed with the host when several).
func (c *Controller) planFlows(ctx context.Context, st state, plan *ApplyPlan) error {
	c.mu.Lock()
	states := c.desiredStates(st.all, st.ports, nil, 0)
	var hosts []string
	for h, d := range states {
		if old, ok := c.sent[h]; !ok || old != digest(d) {
			hosts = append(hosts, h)
		}
	}
	c.mu.Unlock()
	slices.Sort(hosts)
	plan.FlowsRemoved, plan.FlowsAdded = []string{}, []string{}
	for _, h := range hosts {
		d := states[h]
		doc, err := c.fleet.Call(ctx, h, node.Call{Op: node.OpPlan, Desired: &d})
		if errors.Is(err, node.ErrUnreachable) {
			plan.FlowsUnplanned = append(plan.FlowsUnplanned, h)
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: plan on host %s: %w", ErrApply, h, err)
		}
		var p node.Plan
		if err := json.Unmarshal(doc, &p); err != nil {
			return fmt.Errorf("%w: plan on host %s: %w", ErrNode, h, err)
		}
		prefix := ""
		if len(hosts) > 1 {
			prefix = h + ": "
		}
		for _, l := range p.Removed {
			plan.FlowsRemoved = append(plan.FlowsRemoved, prefix+l)
		}
		for _, l := range p.Added {
			plan.FlowsAdded = append(plan.FlowsAdded, prefix+l)
		}
	}
	plan.FlowsPlanned = len(plan.FlowsUnplanned) == 0
	return nil
}

// adopt gives want the fields the store filled into have and the policy
// leaves out: VM UUIDs (by VM name), ACR ids (by subnet and position, when
// the rule is otherwise the same), the revision.
func adopt(want *tenant.Domain, have tenant.Domain) {
	want.Revision = have.Revision
	uuids := map[string]string{}
	for _, s := range have.Subnets {
		for _, vm := range s.VMs {
			uuids[vm.Name] = vm.UUID
		}
	}
	for si := range want.Subnets {
		s := &want.Subnets[si]
		for vi := range s.VMs {
			if s.VMs[vi].UUID == "" {
				s.VMs[vi].UUID = uuids[s.VMs[vi].Name]
			}
		}
		var old []tenant.ACR
		for _, hs := range have.Subnets {
			if hs.Name == s.Name {
				old = hs.ACRs
			}
		}
		for k := range s.ACRs {
			if s.ACRs[k].ID != "" || k >= len(old) {
				continue
			}
			a := s.ACRs[k]
			a.ID = old[k].ID
			if sameJSON(a, old[k]) {
				s.ACRs[k].ID = old[k].ID
			}
		}
	}
	fillIDs(want)
}

func sameDomain(a, b tenant.Domain) bool {
	a.Revision, b.Revision = 0, 0
	return sameJSON(a, b)
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
