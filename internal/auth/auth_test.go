package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
)

func TestTokenRoundTrip(t *testing.T) {
	p := Principal{Role: TenantAdmin, Tenant: "biology"}
	tok, rec, err := NewToken(nil, p, time.Unix(0, 0), "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "rung_"+rec.ID+"_") || len(tok) != len("rung_")+16+1+64 {
		t.Errorf("token %q", tok)
	}
	if strings.Contains(rec.Hash, tok[len(tok)-64:]) {
		t.Error("record holds the secret")
	}
	id, secret, err := ParseToken(tok)
	if err != nil || id != rec.ID {
		t.Fatalf("ParseToken: %q %v", id, err)
	}
	if !rec.Check(secret) {
		t.Error("Check rejects the right secret")
	}
	wrong := []byte(secret)
	wrong[0] ^= 1
	if rec.Check(string(wrong)) || rec.Check("") {
		t.Error("Check accepts a wrong secret")
	}
	if rec.Principal.ID != rec.ID || rec.Role != TenantAdmin || rec.Tenant != "biology" {
		t.Errorf("record %+v", rec)
	}
	// Deterministic from the random source.
	a, _, _ := NewToken(bytes.NewReader(make([]byte, 40)), p, time.Time{}, "")
	b, _, _ := NewToken(bytes.NewReader(make([]byte, 40)), p, time.Time{}, "")
	if a != b {
		t.Error("token not a function of the random bytes")
	}
	if _, _, err := NewToken(bytes.NewReader(nil), p, time.Time{}, ""); err == nil {
		t.Error("no error on a short random source")
	}
}

func TestParseTokenRejects(t *testing.T) {
	for _, s := range []string{
		"", "rung_", "rung__", "Bearer x", "rung_0123456789abcdef",
		"rung_0123456789abcdef_" + strings.Repeat("0", 63),
		"rung_0123456789abcdef_" + strings.Repeat("0", 65),
		"rung_0123456789ABCDEF_" + strings.Repeat("0", 64),
		"rung_../../etc/passw_" + strings.Repeat("0", 64),
		"rung_0123456789abcdef_" + strings.Repeat("g", 64),
	} {
		if _, _, err := ParseToken(s); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v", s, err)
		}
	}
	if (Record{Hash: "zz"}).Check("x") {
		t.Error("Check with a bad hash")
	}
}

func TestPrincipalValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Principal
		ok bool
	}{
		{Principal{Role: Operator}, true},
		{Principal{Role: Operator, Tenant: "a"}, false},
		{Principal{Role: TenantAdmin, Tenant: "a"}, true},
		{Principal{Role: TenantViewer}, false},
		{Principal{Role: "root"}, false},
		{Principal{Role: NodeAgent, Node: "n1"}, true},
		{Principal{Role: NodeAgent}, false},
		{Principal{Role: NodeAgent, Node: "n1", Tenant: "a"}, false},
		{Principal{Role: TenantAdmin, Tenant: "a", Node: "n1"}, false},
		{Principal{Role: Operator, Node: "n1"}, false},
		{Principal{}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.p, err)
		}
	}
	if _, err := ParseRole("admin"); !errors.Is(err, ErrInvalidRole) || !strings.Contains(err.Error(), "tenant-admin") {
		t.Errorf("ParseRole: %v", err)
	}
}

// TestDecide is the access table: role × verb × kind × own/other tenant.
func TestDecide(t *testing.T) {
	op := Principal{ID: "1", Role: Operator}
	admin := Principal{ID: "2", Role: TenantAdmin, Tenant: "bio"}
	viewer := Principal{ID: "3", Role: TenantViewer, Tenant: "bio"}
	node := Principal{ID: "4", Role: NodeAgent, Node: "n1"}
	all := []Verb{Get, List, Apply, Delete}
	type row struct {
		p    Principal
		o    Object
		want [4]Decision // get, list, apply, delete
	}
	A, F, H := Allow, Forbid, Hide
	rows := []row{
		{op, Object{Kind: v1.KindWorkload, Tenant: "bio"}, [4]Decision{A, A, A, A}},
		{op, Object{Kind: v1.KindWorkload, Tenant: "geo"}, [4]Decision{A, A, A, A}},
		{op, Object{Kind: v1.KindTenant, Tenant: "geo"}, [4]Decision{A, A, A, A}},
		{op, Object{Kind: v1.KindTopology, Tenant: ""}, [4]Decision{A, A, A, A}},
		{op, Object{Kind: v1.KindPolicy, Tenant: ""}, [4]Decision{A, A, A, A}},
		{op, Object{Kind: KindToken, Tenant: ""}, [4]Decision{A, A, A, A}},
		{op, Object{Kind: KindPlan, Tenant: ""}, [4]Decision{A, A, F, F}},

		{admin, Object{Kind: v1.KindWorkload, Tenant: "bio"}, [4]Decision{A, A, A, A}},
		{admin, Object{Kind: v1.KindWorkload, Tenant: "geo"}, [4]Decision{H, H, H, H}},
		{admin, Object{Kind: v1.KindWorkload, Tenant: ""}, [4]Decision{H, A, H, H}},
		{admin, Object{Kind: v1.KindTenant, Tenant: "bio"}, [4]Decision{A, A, F, F}},
		{admin, Object{Kind: v1.KindTenant, Tenant: "geo"}, [4]Decision{H, H, H, H}},
		{admin, Object{Kind: v1.KindTopology, Tenant: ""}, [4]Decision{F, F, F, F}},
		{admin, Object{Kind: v1.KindPolicy, Tenant: ""}, [4]Decision{F, F, F, F}},
		{admin, Object{Kind: KindToken, Tenant: ""}, [4]Decision{F, F, F, F}},
		{admin, Object{Kind: KindEvent, Tenant: ""}, [4]Decision{A, A, F, F}},

		{viewer, Object{Kind: v1.KindWorkload, Tenant: "bio"}, [4]Decision{A, A, F, F}},
		{viewer, Object{Kind: v1.KindWorkload, Tenant: "geo"}, [4]Decision{H, H, H, H}},
		{viewer, Object{Kind: v1.KindTenant, Tenant: "bio"}, [4]Decision{A, A, F, F}},
		{viewer, Object{Kind: v1.KindTenant, Tenant: "geo"}, [4]Decision{H, H, H, H}},
		{viewer, Object{Kind: v1.KindTopology, Tenant: ""}, [4]Decision{F, F, F, F}},
		{viewer, Object{Kind: KindToken, Tenant: ""}, [4]Decision{F, F, F, F}},

		{op, Object{Kind: KindNode, Node: "n1"}, [4]Decision{A, A, A, A}},
		{op, Object{Kind: KindNode}, [4]Decision{A, A, A, A}},
		{admin, Object{Kind: KindNode, Node: "n1"}, [4]Decision{F, F, F, F}},
		{viewer, Object{Kind: KindNode}, [4]Decision{F, F, F, F}},

		// A node token heartbeats and reads as its own node, nothing else.
		{node, Object{Kind: KindNode, Node: "n1"}, [4]Decision{A, F, A, F}},
		{node, Object{Kind: KindNode, Node: "n2"}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: KindNode}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: v1.KindWorkload, Tenant: "bio"}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: v1.KindWorkload}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: v1.KindTenant}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: v1.KindTopology}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: v1.KindPolicy}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: KindToken}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: KindPlan}, [4]Decision{F, F, F, F}},
		{node, Object{Kind: KindEvent}, [4]Decision{F, F, F, F}},
		{Principal{Role: NodeAgent}, Object{Kind: KindNode}, [4]Decision{F, F, F, F}},

		{Principal{Role: "root"}, Object{Kind: v1.KindWorkload, Tenant: "bio"}, [4]Decision{F, F, F, F}},
		{Principal{Role: TenantAdmin}, Object{Kind: v1.KindWorkload, Tenant: ""}, [4]Decision{F, F, F, F}},
	}
	for _, r := range rows {
		for i, v := range all {
			if got := Decide(r.p, v, r.o); got != r.want[i] {
				t.Errorf("Decide(%s, %s, %+v) = %s, want %s", r.p.Role+"@"+Role(r.p.Tenant), v, r.o, got, r.want[i])
			}
		}
	}
}
