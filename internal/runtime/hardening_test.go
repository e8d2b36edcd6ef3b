package runtime_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

// fakeRunsc writes a script standing for a runsc that answers
// `runsc FLAG --version` as body says.
func fakeRunsc(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runsc")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunscHardeningFlags: a flag is left out only when runsc refuses it
// as undefined, in Go's flag package's words; any other failure is
// ErrHardening, never a shorter list (a runsc that can't be asked could
// have directfs on).
func TestRunscHardeningFlags(t *testing.T) {
	const undefined = `name=${1%%=*}; echo "flag provided but not defined: -${name#--}" >&2; echo "Usage of runsc:" >&2; exit 2`
	for _, tc := range []struct {
		name, script string
		want         []string
		err          bool
	}{
		{"current: knows both", `echo "runsc version x"; exit 0`, []string{"--directfs=false", "--gofer-network-namespace=new"}, false},
		{"old: knows neither", undefined, []string{}, false},
		{"knows directfs only", `case "$1" in --directfs=*) exit 0;; esac; ` + undefined, []string{"--directfs=false"}, false},
		{"crashes", `echo "panic: boom" >&2; exit 2`, nil, true},
		{"killed", `kill -9 $$`, nil, true},
		{"another message", `echo "flag provided but not defined: -other" >&2; exit 2`, nil, true},
		{"exit 1", `exit 1`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runtime.RunscHardeningFlags(t.Context(), fakeRunsc(t, tc.script))
			if tc.err {
				if !errors.Is(err, runtime.ErrHardening) {
					t.Fatalf("got %v, %v; want ErrHardening", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("flags (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := runtime.RunscHardeningFlags(t.Context(), filepath.Join(t.TempDir(), "no-runsc")); !errors.Is(err, runtime.ErrHardening) {
		t.Errorf("missing binary: %v, want ErrHardening", err)
	}
}

// TestRunscRefusesUnhardened: a sandbox driver whose runsc can't say
// which hardening flags it takes refuses to create, with ErrHardening,
// while the real runsc's driver asks and runs the same bundle.
func TestRunscRefusesUnhardened(t *testing.T) {
	real := newRunsc(t, runtime.Config{}) // the PATH's runsc, as every test
	broken := fakeRunsc(t, `echo "panic: boom" >&2; exit 2`)
	for _, tc := range []struct {
		name    string
		refused bool
	}{{"broken", true}, {"real", false}} {
		t.Run(tc.name, func(t *testing.T) {
			d := real
			if tc.refused {
				var err error
				if d, err = runtime.NewRunsc(runtime.Config{Binary: broken, Dir: filepath.Join(drivertest.SearchableTempDir(t), "runsc")}); err != nil {
					t.Fatal(err)
				}
			}
			id := "hardening-" + tc.name
			bundle := drivertest.BusyboxBundle(t, drivertest.Range(t, 13), drivertest.Shell("true"), drivertest.Cgroups(id))
			exit, err := d.RunOnce(t.Context(), id, bundle, runtime.IO{})
			if tc.refused {
				if !errors.Is(err, runtime.ErrHardening) {
					t.Fatalf("broken runsc: exit %+v, err %v; want ErrHardening", exit, err)
				}
				return
			}
			if err != nil || exit.Code != 0 {
				t.Fatalf("real runsc: exit %+v, err %v", exit, err)
			}
		})
	}
}
