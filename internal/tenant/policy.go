package tenant

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// Policy is a policy file: the domains one operator manages, in YAML or JSON.
type Policy struct {
	Domains []Domain `json:"domains" yaml:"domains"`
}

// MaxPolicyBytes bounds a policy file.
const MaxPolicyBytes = 16 << 20

// ParsePolicy decodes a YAML (or JSON, which is YAML) policy strictly:
// unknown fields are errors. It does not validate; see Policy.Net.
func ParsePolicy(b []byte) (*Policy, error) {
	if len(b) > MaxPolicyBytes {
		return nil, fmt.Errorf("parse policy: %d bytes exceed the limit of %d: %w", len(b), MaxPolicyBytes, ErrInvalid)
	}
	var p Policy
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		if err := DecodeStrictJSON(b, &p); err != nil {
			return nil, fmt.Errorf("parse policy: %v: %w", err, ErrInvalid)
		}
		return &p, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse policy: %v: %w", err, ErrInvalid)
	}
	return &p, nil
}

// LoadPolicy reads, parses and validates a policy file.
func LoadPolicy(path string) (*Policy, *Net, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load policy: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, nil, err
	}
	n, err := NewNet(p.Domains)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range p.Domains {
		if err := CheckAddressing(d); err != nil {
			return nil, nil, err
		}
	}
	return p, n, nil
}
