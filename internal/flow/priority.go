package flow

import (
	"strconv"

	"secaas/internal/tenant"
)

// Priorities remembers the OpenFlow priority each rule got, by rule key.
type Priorities map[string]int

// Rule priorities live in (prioRuleFloor, prioRuleTop].
const prioRuleFloor = 10000

// ruleKey identifies a rule across compilations: its domain, the subnet
// that declares it and its id, or its content (sig, appendRuleSig) when
// it has no id. The n-th identical rule gets #n; keys already given in
// this compilation are out's.
func ruleKey(r *tenant.Rule, sig []byte, out Priorities, buf []byte) (string, []byte) {
	buf = append(strconv.AppendInt(buf[:0], int64(r.Ref.TID), 10), '/')
	buf = append(append(buf, r.Ref.Subnet...), '/')
	if r.Ref.ID != "" {
		buf = append(append(buf, "id:"...), r.Ref.ID...)
	} else {
		buf = append(buf, sig...)
	}
	k := string(buf)
	if _, dup := out[k]; dup {
		for n := 2; ; n++ {
			if kn := k + "#" + strconv.Itoa(n); !has(out, kn) {
				k = kn
				break
			}
		}
	}
	out[k] = -1 // taken; assignPriorities sets the priority
	return k, buf
}

func has(p Priorities, k string) bool { _, ok := p[k]; return ok }

// assignPriorities gives the rules (in evaluation order) strictly
// decreasing priorities. Rules that prev knows keep their priority (their
// relative order cannot have changed: the order is a total order on rule
// content and declaration order); new rules take the middle of the gap
// between their neighbours. When a gap is too small, or on the first
// compilation, the rules are spread evenly over the whole band, which
// leaves room for later insertions. The assignment is recorded in out.
func assignPriorities(rules []*tenant.Rule, sigs [][]byte, prev, out Priorities) []int {
	keys := make([]string, len(rules))
	var buf []byte
	for i, r := range rules {
		keys[i], buf = ruleKey(r, sigs[i], out, buf)
	}
	prios := make([]int, len(rules))
	ok := len(prev) > 0
	if ok {
		// Keep known priorities if they still decrease along the order.
		last := prioRuleTop + 1
		for i, k := range keys {
			p, known := prev[k]
			if !known {
				prios[i] = -1
				continue
			}
			if p >= last || p <= prioRuleFloor {
				ok = false
				break
			}
			prios[i], last = p, p
		}
	}
	if ok {
		// Fill each run of new rules between its known neighbours.
		for i := 0; i < len(prios) && ok; {
			if prios[i] >= 0 {
				i++
				continue
			}
			j := i
			for j < len(prios) && prios[j] < 0 {
				j++
			}
			hi, lo := prioRuleTop+1, prioRuleFloor
			if i > 0 {
				hi = prios[i-1]
			}
			if j < len(prios) {
				lo = prios[j]
			}
			n := j - i
			if hi-lo-1 < n {
				ok = false
				break
			}
			step := (hi - lo) / (n + 1)
			for k := 0; k < n; k++ {
				prios[i+k] = hi - step*(k+1)
			}
			i = j
		}
	}
	if !ok {
		step := (prioRuleTop - prioRuleFloor) / (len(rules) + 1)
		for i := range prios {
			prios[i] = prioRuleTop - step*(i+1) // room above the first and below the last
		}
	}
	for i, k := range keys {
		out[k] = prios[i]
	}
	return prios
}
