package av

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Verdict of one engine or of a whole scan.
type Verdict string

const (
	Clean    Verdict = "CLEAN"
	Infected Verdict = "INFECTED"
	Error    Verdict = "ERROR"
)

// Result is one engine's answer.
type Result struct {
	Engine    string  `json:"engine"`
	Verdict   Verdict `json:"verdict"`
	Signature string  `json:"signature,omitempty"`
	Err       string  `json:"error,omitempty"`
	TookMS    float64 `json:"took_ms"`
}

// Engine scans bytes.
type Engine interface {
	Name() string
	Scan(ctx context.Context, data []byte) (signature string, infected bool, err error)
}

// Policy combines engine results.
type Policy string

const (
	// AnyPositive: one positive engine makes the file INFECTED (default).
	AnyPositive Policy = "any"
	// Majority: more than half of the engines that answered.
	Majority Policy = "majority"
)

// Report is the outcome of scanning one file with every engine.
type Report struct {
	Verdict Verdict  `json:"verdict"`
	Results []Result `json:"results"`
}

// Scanner runs engines in parallel.
type Scanner struct {
	Engines []Engine
	Policy  Policy
	Timeout time.Duration // per engine; default 2 minutes
}

// Scan runs every engine on data concurrently and applies the policy. An
// engine that fails does not make a file clean: if no engine found
// anything and one failed, the verdict is ERROR.
func (s *Scanner) Scan(ctx context.Context, data []byte) Report {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	results := make([]Result, len(s.Engines))
	var wg sync.WaitGroup
	for i, e := range s.Engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			t0 := time.Now()
			sig, bad, err := e.Scan(ctx, data)
			r := Result{Engine: e.Name(), Verdict: Clean, Signature: sig, TookMS: float64(time.Since(t0).Microseconds()) / 1000}
			switch {
			case err != nil:
				r.Verdict, r.Err = Error, err.Error()
			case bad:
				r.Verdict = Infected
			}
			results[i] = r
		}()
	}
	wg.Wait()
	return Report{Verdict: s.Policy.combine(results), Results: results}
}

func (p Policy) combine(rs []Result) Verdict {
	pos, answered, failed := 0, 0, 0
	for _, r := range rs {
		switch r.Verdict {
		case Infected:
			pos++
			answered++
		case Clean:
			answered++
		case Error:
			failed++
		}
	}
	switch {
	case p == Majority && answered > 0 && pos*2 > answered:
		return Infected
	case p != Majority && pos > 0:
		return Infected
	case failed > 0:
		return Error
	}
	return Clean
}

// ParsePolicy checks a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", AnyPositive:
		return AnyPositive, nil
	case Majority:
		return Majority, nil
	}
	return "", fmt.Errorf("verdict policy %q is neither %q nor %q", s, AnyPositive, Majority)
}

// Signatures of the scan result, for messages.
func (r Report) Signatures() string {
	var s []string
	for _, x := range r.Results {
		if x.Verdict == Infected {
			s = append(s, x.Engine+":"+x.Signature)
		}
	}
	return strings.Join(s, ", ")
}
