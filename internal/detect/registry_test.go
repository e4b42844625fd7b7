package detect

import (
	"testing"

	"secaas/internal/lstm"
)

// TestRegistry: every detector is known once, with what it needs.
func TestRegistry(t *testing.T) {
	want := map[string]struct {
		use  ModelUse
		kind lstm.Kind
	}{"stability": {NoModel, ""}, "normalized": {NoModel, ""}, "lstm": {NeedsModel, lstm.Classifier}, "lstm-unsup": {FitsModel, lstm.Forecaster}}
	if got := Names(); len(got) != len(want) {
		t.Fatalf("registered %v", got)
	}
	for name, w := range want {
		use, ok := Uses(name)
		if !ok || use != w.use || ModelKind(name) != w.kind {
			t.Errorf("%s: use %v (%v), kind %q; want %v, %q", name, use, ok, ModelKind(name), w.use, w.kind)
		}
	}
	if err := CheckPolicy("lstm", false); err == nil {
		t.Error("lstm without a model passed the policy check")
	}
	if err := CheckPolicy("normalized", true); err == nil {
		t.Error("normalized with a model passed the policy check")
	}
	if _, err := New("nonesuch", Params{}); err == nil {
		t.Error("an unknown detector was made")
	}
}
