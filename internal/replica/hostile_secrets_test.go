package replica

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			if p := unescapeMount(f[4]); p == dir || strings.HasPrefix(p, dir+"/") {
				out = append(out, p)
			}
		}
	}
	return out
}

// TestSecretMountThroughSymlinks: an image whose secret mount path goes
// through a symlink, out of the root or inside it (onto /proc), gets no
// secret and no mount anywhere; a plain path gets its tmpfs with the
// files, mode 0400.
func TestSecretMountThroughSymlinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	outside, err := filepath.EvalSymlinks(t.TempDir()) // what an escaping link points at
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmountUnder(root); err != nil {
			t.Error(err)
		}
	})
	for _, d := range []string{"proc", "etc"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"run": outside, "data": "proc", "up": "../.."} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	data := map[string]map[string]string{"db": {"password": "hunter2"}}
	for _, p := range []string{"/run/secrets/db", "/data/db", "/up/db", "/data"} {
		err := mountSecrets(root, Spec{Secrets: []SecretMount{{Name: "db", MountPath: p}}, SecretData: data}, 0, 0)
		if err == nil {
			t.Errorf("secret at %s (through a symlink): mounted", p)
		}
		if m := mountsUnder(t, root); len(m) > 0 {
			t.Fatalf("secret at %s: mounts %v", p, m)
		}
		if m := mountsUnder(t, outside); len(m) > 0 {
			t.Fatalf("secret at %s: mounts outside the root %v", p, m)
		}
		if ents, _ := os.ReadDir(outside); len(ents) > 0 {
			t.Errorf("secret at %s: wrote %v outside the root", p, ents)
		}
	}
	// The allowed case.
	if err := mountSecrets(root, Spec{Secrets: []SecretMount{{Name: "db", MountPath: "/etc/db"}}, SecretData: data}, 0, 0); err != nil {
		t.Fatalf("secret at /etc/db: %v", err)
	}
	f := filepath.Join(root, "etc", "db", "password")
	got, err := os.ReadFile(f)
	st, serr := os.Stat(f)
	if err != nil || string(got) != "hunter2" || serr != nil || st.Mode().Perm() != 0o400 {
		t.Errorf("secret file %s: %q %v, mode %v", f, got, errors.Join(err, serr), st.Mode())
	}
	if m := mountsUnder(t, root); len(m) != 1 || m[0] != filepath.Join(root, "etc", "db") {
		t.Errorf("mounts %v, want the one tmpfs at etc/db", m)
	}
}
