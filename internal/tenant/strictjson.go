package tenant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxJSONDepth bounds the nesting of a strict JSON document.
const MaxJSONDepth = 64

// DecodeStrictJSON decodes one JSON value into v the strict way: unknown
// fields, duplicate keys at any depth (where encoding/json lets the last
// one win, so that {"action":"drop","action":"pass"} would pass), nesting
// deeper than MaxJSONDepth and trailing data are errors.
func DecodeStrictJSON(b []byte, v any) error {
	if err := CheckJSONKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the value")
	}
	return nil
}

// CheckJSONKeys walks a JSON document's tokens and reports the first
// object that names a key twice.
func CheckJSONKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []jsonFrame
	for {
		t, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].expect {
			if d, ok := t.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				markValue(stack)
				continue
			}
			k, _ := t.(string)
			if stack[n-1].keys[k] {
				return fmt.Errorf("duplicate key %q", k)
			}
			stack[n-1].keys[k] = true
			stack[n-1].expect = false
			continue
		}
		switch d, _ := t.(json.Delim); d {
		case '{':
			stack = append(stack, jsonFrame{keys: map[string]bool{}, expect: true})
		case '[':
			stack = append(stack, jsonFrame{})
		case '}', ']':
			stack = stack[:len(stack)-1]
			markValue(stack)
		default:
			markValue(stack)
		}
		if len(stack) > MaxJSONDepth {
			return fmt.Errorf("nested deeper than %d", MaxJSONDepth)
		}
	}
}

// jsonFrame is one open object or array: the keys seen (nil for an
// array) and whether the next token of an object is a key.
type jsonFrame struct {
	keys   map[string]bool
	expect bool
}

// markValue notes that a value ended: in an object, a key comes next.
func markValue(stack []jsonFrame) {
	if n := len(stack); n > 0 && stack[n-1].keys != nil {
		stack[n-1].expect = true
	}
}
