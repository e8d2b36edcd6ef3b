package scan

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"rung.dev/rung/internal/golden"
	"rung.dev/rung/internal/image/imagetest"
)

// ent is one tar entry of a test layer.
type ent struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

// layer is a layer of exactly ents.
func layer(t testing.TB, ents ...ent) v1.Layer {
	t.Helper()
	es := make([]imagetest.Entry, len(ents))
	for i, e := range ents {
		es[i] = imagetest.Entry{Name: e.name, Type: e.typ, Body: e.body, Link: e.link, Mode: e.mode}
	}
	return imagetest.Layer(t, imagetest.Tar(t, es...))
}

func testdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const pemKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB...\n-----END EC PRIVATE KEY-----\n"

// debianImage is a three-layer Debian-like image with one of each notable
// thing, some of them removed again by later layers.
func debianImage(t testing.TB) v1.Image {
	t.Helper()
	base := layer(t,
		ent{name: "etc/", typ: tar.TypeDir},
		ent{name: "etc/os-release", typ: tar.TypeSymlink, link: "../usr/lib/os-release"},
		ent{name: "usr/lib/os-release", body: testdata(t, "os-release-debian12")},
		ent{name: "var/lib/dpkg/status", body: testdata(t, "dpkg-status")},
		ent{name: "usr/bin/passwd", mode: 0o4755, body: "ELF"},
		ent{name: "usr/bin/wall", mode: 0o2755, body: "ELF"},
		ent{name: "usr/bin/gone-suid", mode: 0o4755, body: "ELF"},
		ent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		ent{name: "srv/shared/", typ: tar.TypeDir, mode: 0o777},
		ent{name: "srv/shared/old-suid", mode: 0o4755},
		ent{name: "bin/sh", typ: tar.TypeSymlink, link: "dash"},
		ent{name: "build/id_rsa", mode: 0o600, body: "secret"},
		ent{name: "usr/share/doc/openssl/test.key", body: pemKey},
		ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		ent{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660},
		ent{name: "run/initctl", typ: tar.TypeFifo, mode: 0o600},
	)
	app := layer(t,
		ent{name: "usr/bin/.wh.gone-suid"},
		ent{name: "build/.wh.id_rsa"},
		ent{name: "srv/shared/.wh..wh..opq"},
		ent{name: "srv/shared/new", mode: 0o666},
		ent{name: "app/.env", body: "DB_PASSWORD=x"},
		ent{name: "app/.env.example", body: "DB_PASSWORD="},
		ent{name: "app/tls.pem", body: "cert\n" + pemKey},
		ent{name: "root/.aws/credentials", body: "[default]"},
		ent{name: "app/sa.json", body: `{"type": "service_account", "private_key": "..."}`},
		ent{name: "app/config.yaml", body: "aws_access_key_id: AKIAIOSFODNN7EXAMPLE\naws_secret_access_key: wJalrXUtnFEMI"},
	)
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Config.User = ""
	cfg.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}, "8080/tcp": {}}
	cfg.Config.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", "/bin/true"}}
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.title": "app"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestInspect(t *testing.T) {
	res, err := Inspect(t.Context(), debianImage(t), Options{Advisories: fixtureDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Facts
	if len(f.Packages) != 36 || f.OS != "debian 12" || !f.VulnDB || len(f.Vulnerabilities) != 3 {
		t.Errorf("packages %d, os %q, vulndb %v, vulnerabilities %d", len(f.Packages), f.OS, f.VulnDB, len(f.Vulnerabilities))
	}
	f.Packages, f.Vulnerabilities = nil, nil // covered by the inventory and match tests
	got, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "inspect.golden.json"), append(got, '\n'))
}

func TestInspectAlpineAndRPM(t *testing.T) {
	alpine := layer(t,
		ent{name: "etc/os-release", body: testdata(t, "os-release-alpine")},
		ent{name: "lib/apk/db/installed", body: testdata(t, "apk-installed")},
	)
	img, _ := mutate.AppendLayers(empty.Image, alpine)
	res, err := Inspect(t.Context(), img, Options{Advisories: fixtureDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Facts.Packages) != 3 || len(res.Facts.Vulnerabilities) != 1 || res.Facts.Packages[0].Ecosystem != "Alpine:v3.20" {
		t.Errorf("alpine facts %+v", res.Facts)
	}

	rhel := layer(t,
		ent{name: "etc/os-release", body: "ID=almalinux\nVERSION_ID=9.4\n"},
		ent{name: "var/lib/rpm/rpmdb.sqlite", body: "SQLite format 3\x00"},
	)
	img, _ = mutate.AppendLayers(empty.Image, rhel)
	res, err = Inspect(t.Context(), img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Facts.Unreadable) != 1 || !strings.HasPrefix(res.Facts.Unreadable[0], "/var/lib/rpm/rpmdb.sqlite: ") || res.Facts.VulnDB {
		t.Errorf("broken rpm database: unreadable %q, vulndb %v", res.Facts.Unreadable, res.Facts.VulnDB)
	}
	// An image without an rpm database but with a listing (Azure Linux's
	// distroless images) is inventoried from the listing.
	listOnly := layer(t,
		ent{name: "etc/os-release", body: "ID=almalinux\nVERSION_ID=9.4\n"},
		ent{name: "var/lib/rung/rpm-manifest", body: testdata(t, "rpm-manifest")},
	)
	img, _ = mutate.AppendLayers(empty.Image, listOnly)
	res, err = Inspect(t.Context(), img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Facts.Gaps) != 0 || len(res.Facts.Packages) != 2 || res.Facts.Packages[0].Ecosystem != "AlmaLinux:9" {
		t.Errorf("rpm listing: gaps %q, packages %+v", res.Facts.Gaps, res.Facts.Packages)
	}
}

func TestInspectLimits(t *testing.T) {
	img := debianImage(t)
	if _, err := Inspect(t.Context(), img, Options{MaxBytes: 4096}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
	bad, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("not a tar stream at all, just text padding it out to more than a block..........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, _ = mutate.AppendLayers(empty.Image, bad)
	if _, err := Inspect(t.Context(), img, Options{}); !errors.Is(err, ErrInvalidLayer) {
		t.Errorf("err = %v, want ErrInvalidLayer", err)
	}
}
