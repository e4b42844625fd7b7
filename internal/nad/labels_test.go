package nad

import (
	"strings"
	"testing"
	"time"

	"secaas/internal/detect"
	"secaas/internal/feature"
)

func TestParseLabelsCSV(t *testing.T) {
	l, err := ParseLabels([]byte("start_unix,end_unix,kind,note\n1700000000.5,1700000010,synflood,slow one\n1700000100,1700000100,portscan\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Attacks) != 2 || l.Attacks[0].Type != "synflood" || l.Attacks[0].Start != time.Unix(1700000000, 5e8).UTC() ||
		l.Attacks[1].End != time.Unix(1700000100, 0).UTC() || l.Start != l.Attacks[0].Start {
		t.Fatalf("%+v", l)
	}
	for _, bad := range []struct{ name, in, want string }{
		{"empty", "", "header"},
		{"header", "start,end,kind\n1,2,x\n", "column 1"},
		{"short header", "start_unix,end_unix\n", "first columns"},
		{"short row", "start_unix,end_unix,kind\n1,2\n", "line 2"},
		{"not a number", "start_unix,end_unix,kind\nx,2,k\n", "not a unix time"},
		{"nan", "start_unix,end_unix,kind\nNaN,2,k\n", "not a unix time"},
		{"backwards", "start_unix,end_unix,kind\n5,2,k\n", "ends before"},
		{"no kind", "start_unix,end_unix,kind\n1,2, \n", "empty kind"},
		{"json", `{"attacks": [{"type": "x", "start": "2026-01-01T00:00:10Z", "end": "2026-01-01T00:00:00Z"}]}`, "ends before"},
		{"bad json", `{"attacks": 3}`, "cannot unmarshal"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := ParseLabels([]byte(bad.in))
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("got %v, want an error with %q", err, bad.want)
			}
		})
	}
}

func FuzzParseLabels(f *testing.F) {
	f.Add([]byte("start_unix,end_unix,kind\n1,2,x\n"))
	f.Add([]byte(`{"server":"10.0.0.1","attacks":[{"type":"synflood","start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:01Z"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLabels(b)
		if err != nil {
			return
		}
		for _, a := range l.Attacks {
			if a.End.Before(a.Start) {
				t.Fatalf("accepted an attack that ends before it starts: %+v", a)
			}
		}
	})
}

// windows makes n one-second windows from t0 with a syn feature of v(i).
func windows(t0 time.Time, n int, v func(int) float64) []feature.Window {
	ws := make([]feature.Window, n)
	for i := range ws {
		ws[i] = feature.Window{Start: t0.Add(time.Duration(i) * time.Second).UnixNano(), Duration: time.Second}
		for j := range ws[i].Stability {
			ws[i].Stability[j] = 1 + 0.01*float64((i*7+j*3)%5)
		}
		ws[i].Stability[0] = v(i)
	}
	return ws
}

// TestJudgeAndEpisodes: windows before --train-first are not judged; each
// label row is an episode; false alarms are counted as runs, per hour.
func TestJudgeAndEpisodes(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	attack := func(i int) bool { return (i >= 300 && i < 303) || (i >= 500 && i < 502) }
	ws := windows(t0, 720, func(i int) float64 {
		switch {
		case attack(i):
			return 0.9
		case i == 400 || i == 401 || i == 600: // two benign oddities: 3 windows, 2 runs
			return 0.5
		}
		return 0.1
	})
	res, err := Judge(ws, []string{"normalized"}, detect.Params{History: 60}, t0.Add(120*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 600 || time.Unix(0, res[0].Window.Start) != t0.Add(120*time.Second) || !res[0].Verdicts["normalized"].Ready {
		t.Fatalf("%d results, first %v ready %v", len(res), time.Unix(0, res[0].Window.Start), res[0].Verdicts["normalized"].Ready)
	}
	labels := &Labels{Attacks: []Attack{
		{Type: "synflood", Start: t0.Add(300 * time.Second), End: t0.Add(302*time.Second + 500*time.Millisecond)},
		{Type: "portscan", Start: t0.Add(500 * time.Second), End: t0.Add(501*time.Second + 500*time.Millisecond)},
		{Type: "early", Start: t0.Add(10 * time.Second), End: t0.Add(11 * time.Second)},
	}}
	ev := Evaluate("normalized", res, labels, 0)
	if ev.WindowsJudged != 600 || ev.BenignWindows != 595 {
		t.Fatalf("judged %d, benign %d", ev.WindowsJudged, ev.BenignWindows)
	}
	if !ev.Episodes[0].Detected || !ev.Episodes[1].Detected || ev.Episodes[2].Judged || ev.Episodes[2].Detected {
		t.Fatalf("episodes %+v", ev.Episodes)
	}
	if *ev.Episodes[0].FirstAlertAfter != 1 {
		t.Fatalf("first alert after %v s, want 1 (the end of the attack's first window)", *ev.Episodes[0].FirstAlertAfter)
	}
	hours := 595.0 / 3600
	if ev.FalseAlarms != 3 || ev.FalseAlarmsPerHour != 2/hours {
		t.Fatalf("false alarm windows %d, per hour %.2f (want 3 windows, %.2f per hour)", ev.FalseAlarms, ev.FalseAlarmsPerHour, 2/hours)
	}
	if ev.AUC < 0.99 {
		t.Fatalf("AUC %.3f", ev.AUC)
	}
}

func TestJudgeNeedsAFitOrModel(t *testing.T) {
	ws := windows(time.Unix(1700000000, 0), 50, func(int) float64 { return 0.1 })
	if _, err := Judge(ws, []string{"lstm"}, detect.Params{}, time.Time{}); err == nil || !strings.Contains(err.Error(), "model") {
		t.Fatalf("lstm without a model: %v", err)
	}
	if _, err := Judge(ws, []string{"nonesuch"}, detect.Params{}, time.Time{}); err == nil {
		t.Fatal("an unknown detector ran")
	}
}
