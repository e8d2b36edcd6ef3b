package replica_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/image/imagetest"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/sign"
	"rung.dev/rung/internal/tenancy"
)

func genKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.MarshalPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, string(pub)
}

// TestSignedImagesOnNode: with the tenant's signedBy keys, only an image
// signed by one of them runs, and the digest that was verified is the one
// that runs.
func TestSignedImagesOnNode(t *testing.T) {
	drivertest.RequireBinary(t, "runc")
	n := node(t)
	ctx := t.Context()
	reg := imagetest.Registry(t)

	img, _, err := n.Images().Resolve(ctx, "busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	push := func(ref string) name.Tag {
		tag, err := name.NewTag(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
		return tag
	}
	ci, ciPub := genKey(t)
	other, _ := genKey(t)
	signed := push(reg + "/team/busybox:1")
	d, err := sign.Sign(ctx, signed, ci)
	if err != nil {
		t.Fatal(err)
	}
	push(reg + "/team/unsigned:1")
	wrong := push(reg + "/team/wrong:1")
	if _, err := sign.Sign(ctx, wrong, other); err != nil {
		t.Fatal(err)
	}
	policy := &v1.ImagePolicy{SignedBy: []string{ciPub}}
	spec := func(id, ref string, p *v1.ImagePolicy) replica.Spec {
		return replica.Spec{ID: id, Tenant: "biology", Tier: tenancy.Container, Image: ref, Args: []string{"true"}, Images: p}
	}

	exit, err := n.Run(ctx, spec("signed-0", signed.String(), policy), runtime.IO{})
	if err != nil || exit.Code != 0 {
		t.Fatalf("signed image: exit %+v, err %v", exit, err)
	}
	if _, err := n.Prepare(ctx, spec("signed-1", signed.String(), policy)); err != nil {
		t.Fatal(err)
	}
	recs, err := n.Records()
	if err != nil || len(recs) != 1 {
		t.Fatalf("records %v, err %v", recs, err)
	}
	if recs[0].Digest != d.DigestStr() {
		t.Errorf("record digest %s, want the signed %s", recs[0].Digest, d.DigestStr())
	}
	if err := n.Remove(ctx, "signed-1"); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, ref string
		policy    *v1.ImagePolicy
		want      string
	}{
		{"unsigned", reg + "/team/unsigned:1", policy, "RUNG-image-signature"},
		{"other key", wrong.String(), policy, "RUNG-image-signature"},
		{"local name", "busybox:latest", policy, "run images from a registry"},
		{"registry allow-list", signed.String(), &v1.ImagePolicy{Registries: []string{"registry.campus.example/"}}, "RUNG-registry-allow-list"},
		{"allow-list and local", "busybox:latest", &v1.ImagePolicy{Registries: []string{reg + "/"}}, "RUNG-registry-allow-list"},
	} {
		_, err := n.Run(ctx, spec("refused-0", c.ref, c.policy), runtime.IO{})
		if !errors.Is(err, replica.ErrRejected) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want ErrRejected naming %s", c.name, err, c.want)
		}
		if left, _ := n.Leftovers(); len(left) != 0 {
			t.Errorf("%s: left directories %v", c.name, left)
		}
	}
	// Allowed registry, signed: runs.
	ok := &v1.ImagePolicy{Registries: []string{reg + "/team/"}, SignedBy: []string{ciPub}}
	if exit, err := n.Run(ctx, spec("signed-2", signed.String(), ok), runtime.IO{}); err != nil || exit.Code != 0 {
		t.Errorf("allowed and signed: exit %+v, err %v", exit, err)
	}
}
