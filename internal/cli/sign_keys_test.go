package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/image/imagetest"
	"rung.dev/rung/internal/sign"
)

// cosignFixtures holds a key pair made by cosign itself (see its README).
const cosignFixtures = "../sign/testdata/cosign"

// runImageCmd runs `rung image ARGS…` with stdin that is never a terminal,
// so that no test can block on a password prompt.
func runImageCmd(t *testing.T, args ...string) (code int, out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	img := &cobra.Command{Use: "image", SilenceUsage: true, SilenceErrors: true}
	img.AddCommand(newImageSignCmd(), newImageVerifyCmd(), newImageKeygenCmd())
	img.SetArgs(args)
	img.SetIn(strings.NewReader(""))
	img.SetOut(&o)
	img.SetErr(&e)
	if err := img.ExecuteContext(context.Background()); err != nil {
		e.WriteString(err.Error())
		if x, ok := errors.AsType[*exitError](err); ok {
			return x.code, o.String(), e.String()
		}
		return ExitFailure, o.String(), e.String()
	}
	return ExitOK, o.String(), e.String()
}

// unsetPassword unsets COSIGN_PASSWORD for one test (t.Setenv restores it).
func unsetPassword(t *testing.T) {
	t.Setenv(passwordEnv, "")
	os.Unsetenv(passwordEnv)
}

func pemType(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: not PEM", path)
	}
	return b.Type
}

// TestImageKeygen: the files cosign generate-key-pair would write, whose
// private half decrypts with $COSIGN_PASSWORD and matches the public half.
func TestImageKeygen(t *testing.T) {
	tests := []struct {
		name     string
		password *string // nil: unset
		args     []string
		wantCode int
		wantPEM  string
		wantErr  string
	}{
		{"password", ptr("s3cret"), nil, ExitOK, "ENCRYPTED SIGSTORE PRIVATE KEY", ""},
		{"empty password, as cosign allows", ptr(""), nil, ExitOK, "ENCRYPTED SIGSTORE PRIVATE KEY", ""},
		{"unencrypted", nil, []string{"--unencrypted"}, ExitOK, "PRIVATE KEY", ""},
		{"no password and no terminal", nil, nil, ExitInvalid, "", "COSIGN_PASSWORD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			unsetPassword(t)
			if tc.password != nil {
				t.Setenv(passwordEnv, *tc.password)
			}
			prefix := filepath.Join(t.TempDir(), "ci")
			code, _, stderr := runImageCmd(t, append([]string{"keygen", prefix}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to say %q", code, tc.wantCode, stderr, tc.wantErr)
			}
			if tc.wantCode != ExitOK {
				for _, f := range []string{prefix + ".key", prefix + ".pub"} {
					if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s written by a failed keygen (%v)", f, err)
					}
				}
				return
			}
			if got := pemType(t, prefix+".key"); got != tc.wantPEM {
				t.Errorf("private key PEM %q, want %q", got, tc.wantPEM)
			}
			st, err := os.Stat(prefix + ".key")
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("private key mode %v, want 0600 (%v)", st.Mode().Perm(), err)
			}
			var pass sign.Password
			if tc.password != nil {
				pass = sign.StaticPassword([]byte(*tc.password))
				if _, err := sign.LoadPrivateKey(prefix+".key", sign.StaticPassword([]byte(*tc.password+"x"))); !errors.Is(err, sign.ErrKey) {
					t.Errorf("decrypts with another password: %v", err)
				}
			}
			priv, err := sign.LoadPrivateKey(prefix+".key", pass)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := sign.LoadPublicKey(prefix + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			if !pub.Public.(*ecdsa.PublicKey).Equal(priv.Public()) {
				t.Error("PREFIX.pub is not the half of PREFIX.key")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestImageKeygenNoOverwrite: an existing half of a pair is kept as it is,
// and the other half is not written either.
func TestImageKeygenNoOverwrite(t *testing.T) {
	t.Setenv(passwordEnv, "s3cret")
	for _, existing := range []string{".key", ".pub"} {
		prefix := filepath.Join(t.TempDir(), "ci")
		if err := os.WriteFile(prefix+existing, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runImageCmd(t, "keygen", prefix)
		if code == ExitOK || !strings.Contains(stderr, "already exists") {
			t.Errorf("%s exists: exit %d, %s", existing, code, stderr)
		}
		if b, _ := os.ReadFile(prefix + existing); string(b) != "keep me" {
			t.Errorf("%s overwritten: %q", existing, b)
		}
		other := map[string]string{".key": ".pub", ".pub": ".key"}[existing]
		if _, err := os.Lstat(prefix + other); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists: %s written anyway (%v)", existing, other, err)
		}
	}
}

// TestImageSignCosignKey signs with the key cosign generate-key-pair made,
// its password taken from COSIGN_PASSWORD, and verifies with cosign.pub.
func TestImageSignCosignKey(t *testing.T) {
	reg := imagetest.Registry(t)
	ref := reg + "/acme/api:1.0"
	pushImage(t, ref, testImage(t, true))
	key := filepath.Join(cosignFixtures, "cosign.key")
	pub := filepath.Join(cosignFixtures, "cosign.pub")

	unsetPassword(t)
	code, _, stderr := runImageCmd(t, "sign", ref, "--key", key)
	if code != ExitInvalid || !strings.Contains(stderr, "COSIGN_PASSWORD") || !strings.Contains(stderr, key) {
		t.Errorf("no password: exit %d, %s", code, stderr)
	}
	t.Setenv(passwordEnv, "not-the-password")
	code, _, stderr = runImageCmd(t, "sign", ref, "--key", key)
	if code != ExitInvalid || !strings.Contains(stderr, "wrong password") || !strings.Contains(stderr, key) {
		t.Errorf("wrong password: exit %d, %s", code, stderr)
	}
	if code, _, _ := runImageCmd(t, "verify", ref, "--key", pub); code != ExitRejected {
		t.Fatalf("failed signing left a signature: verify exit %d", code)
	}

	t.Setenv(passwordEnv, "rung-fixture-password")
	code, out, stderr := runImageCmd(t, "sign", ref, "--key", key)
	if code != ExitOK || !strings.Contains(out, "signed "+reg+"/acme/api@sha256:") {
		t.Fatalf("sign: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runImageCmd(t, "verify", ref, "--key", pub)
	if code != ExitOK || !strings.Contains(out, "signed by "+pub) {
		t.Errorf("verify with cosign.pub: exit %d\n%s%s", code, out, stderr)
	}
}
