package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/secret"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// secretsDir holds /secrets/TENANT/NAME: a Secret's metadata and value
// digests in the clear, its values sealed (AES-GCM, internal/secret) and
// bound to the key they are stored at.
const secretsDir = "/secrets"

// storedSecret is a Secret as stored.
type storedSecret struct {
	Metadata v1.ObjectMeta    `json:"metadata"`
	Keys     []wire.SecretKey `json:"keys"`
	Sealed   secret.Sealed    `json:"sealed"`
}

func secretKey(tenant, name string) string { return secretsDir + "/" + tenant + "/" + name }

// noKeyring answers when the server was started without a keyring.
func noKeyring() error {
	return newError(http.StatusServiceUnavailable, wire.CodeUnavailable,
		"this server has no secret keyring, so it stores no secrets; rung up makes one in its data directory")
}

// decodeSecret reads a PUT body (JSON or YAML) strictly into a Secret
// whose names match the path, and validates it.
func decodeSecret(w http.ResponseWriter, r *http.Request, tenant, name string) (*v1.Secret, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	if err := checkJSON(r, body); err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, badRequest("request body: not YAML or JSON: %v", truncate(err.Error(), 200))
	}
	var s v1.Secret
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, badRequest("request body: %v (a Secret has apiVersion, kind, metadata {name, tenant, labels} and spec.data)", truncate(err.Error(), 200))
	}
	switch {
	case s.Metadata.Name != name:
		return nil, badRequest("metadata.name %q does not match the name %q in the path", truncate(s.Metadata.Name, 64), name)
	case s.Metadata.Tenant != tenant:
		return nil, badRequest("metadata.tenant %q does not match the tenant %q in the path", truncate(s.Metadata.Tenant, 64), tenant)
	}
	if err := s.Validate(); err != nil {
		return nil, manifestError(http.StatusUnprocessableEntity, err, subject{kind: v1.KindSecret, name: tenant + "/" + name})
	}
	return &s, nil
}

// applySecret stores a Secret, its values sealed. Writing the same values
// again writes nothing.
func (s *Server) applySecret(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, obj, err := s.authorizePath(r, auth.Apply, v1.KindSecret)
	if err != nil {
		return err
	}
	if s.keyring == nil {
		return noKeyring()
	}
	sec, err := decodeSecret(w, r, tenant, name)
	if err != nil {
		s.refuse(ctx, obj, name, err)
		return err
	}
	var res wire.ApplyResult
	err = s.retry(ctx, tenant, func() error {
		res, err = s.applySecretOnce(ctx, sec)
		return err
	})
	if err != nil {
		if retryable(err) {
			err = &httpError{Status: http.StatusConflict, Code: wire.CodeConflict, Msg: "the secret or its tenant kept changing; retry", Err: err}
		}
		s.refuse(ctx, obj, name, err)
		return err
	}
	status := http.StatusOK
	if res.Result == wire.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, res)
	return nil
}

func (s *Server) applySecretOnce(ctx context.Context, sec *v1.Secret) (wire.ApplyResult, error) {
	tenant, name := sec.Metadata.Tenant, sec.Metadata.Name
	res := wire.ApplyResult{Kind: v1.KindSecret, Tenant: tenant, Name: name}
	t, err := s.storedTenant(ctx, tenant)
	if err != nil {
		return res, err
	}
	key := secretKey(tenant, name)
	st := storedSecret{Metadata: v1.ObjectMeta{Name: name, Tenant: tenant, Labels: sec.Metadata.Labels}}
	for _, k := range slices.Sorted(maps.Keys(sec.Spec.Data)) {
		st.Keys = append(st.Keys, wire.SecretKey{Name: k, Digest: s.keyring.Digest([]byte(sec.Spec.Data[k]))})
	}
	expect := store.Create
	cur, err := s.store.Get(ctx, key)
	switch {
	case err == nil:
		var old storedSecret
		if json.Unmarshal(cur.Data, &old) == nil && slices.Equal(old.Keys, st.Keys) && maps.Equal(old.Metadata.Labels, st.Metadata.Labels) {
			res.Result, res.Revision = wire.Unchanged, cur.Revision
			return res, nil
		}
		expect = cur.Revision
	case !errors.Is(err, store.ErrNotFound):
		return res, err
	}
	plain, err := json.Marshal(sec.Spec.Data)
	if err != nil {
		return res, err
	}
	st.Sealed = s.keyring.Seal(key, plain)
	data, err := json.Marshal(st)
	if err != nil {
		return res, err
	}
	res.Result = wire.Created
	if expect != store.Create {
		res.Result = wire.Updated
	}
	p := principal(ctx)
	e := Entry{Actor: actor(p), ActorTenant: p.Tenant, Action: "apply", Kind: v1.KindSecret, Tenant: tenant, Name: name,
		Result: res.Result, Message: "keys " + keyNames(st.Keys), RequestID: requestID(ctx)}
	rev, err := s.commit(ctx, e, store.PutOp(key, data, expect), store.CheckOp(t.Key, t.Revision))
	if err != nil {
		return res, fmt.Errorf("apply secret %s: %w", key, err)
	}
	res.Revision = rev
	return res, nil
}

func keyNames(ks []wire.SecretKey) string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name
	}
	return strings.Join(head(names, 16), ", ")
}

// info is a stored secret as the API shows it.
func secretInfo(v store.Value) (wire.SecretInfo, error) {
	var st storedSecret
	if err := json.Unmarshal(v.Data, &st); err != nil {
		return wire.SecretInfo{}, fmt.Errorf("decode secret %s: %w", v.Key, err)
	}
	info := wire.SecretInfo{APIVersion: v1.APIVersion, Kind: v1.KindSecret, Keys: st.Keys, Revision: v.Revision}
	info.Metadata.Name, info.Metadata.Tenant, info.Metadata.Labels = st.Metadata.Name, st.Metadata.Tenant, st.Metadata.Labels
	if info.Keys == nil {
		info.Keys = []wire.SecretKey{}
	}
	return info, nil
}

// getSecret shows a secret's keys and digests, never its values.
func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, _, err := s.authorizePath(r, auth.Get, v1.KindSecret)
	if err != nil {
		return err
	}
	v, err := s.store.Get(ctx, secretKey(tenant, name))
	if errors.Is(err, store.ErrNotFound) {
		return notFound(v1.KindSecret, tenant, name)
	} else if err != nil {
		return err
	}
	info, err := secretInfo(v)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// listSecrets lists one page of the secrets the caller may see.
func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	dir, _, pg, err := s.listScope(r, v1.KindSecret, secretsDir, true)
	if err != nil {
		return err
	}
	page, err := s.listPage(ctx, dir, pg)
	if err != nil {
		return err
	}
	out := wire.SecretList{Items: []wire.SecretInfo{}, Revision: page.Revision}
	for _, v := range page.Values {
		info, err := secretInfo(v)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, info)
	}
	if page.More {
		out.Continue = nextBelow(dir, page.Values[len(page.Values)-1].Key, page.Revision)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteSecret removes a secret.
func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, _, err := s.authorizePath(r, auth.Delete, v1.KindSecret)
	if err != nil {
		return err
	}
	key := secretKey(tenant, name)
	cur, err := s.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(v1.KindSecret, tenant, name)
	} else if err != nil {
		return err
	}
	p := principal(ctx)
	e := Entry{Actor: actor(p), ActorTenant: p.Tenant, Action: "delete", Kind: v1.KindSecret, Tenant: tenant, Name: name,
		Result: "deleted", RequestID: requestID(ctx)}
	rev, err := s.commit(ctx, e, store.DeleteOp(key, cur.Revision))
	if errors.Is(err, store.ErrConflict) {
		return &httpError{Status: http.StatusConflict, Code: wire.CodeConflict, Msg: "the secret changed meanwhile; retry", Err: err}
	} else if err != nil {
		return fmt.Errorf("delete secret %s: %w", key, err)
	}
	writeJSON(w, http.StatusOK, wire.DeleteResult{Kind: v1.KindSecret, Tenant: tenant, Name: name, Revision: rev})
	return nil
}

// SecretData returns a secret's values for delivery into a replica, and
// audits the read: by names who reads it (a node, "node/n1"). The
// caller must have checked that by may read it.
func (s *Server) SecretData(ctx context.Context, tenant, name, by string) (map[string]string, error) {
	if s.keyring == nil {
		return nil, noKeyring()
	}
	key := secretKey(tenant, name)
	v, err := s.store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", tenant, name, err)
	}
	var st storedSecret
	if err := json.Unmarshal(v.Data, &st); err != nil {
		return nil, fmt.Errorf("decode secret %s: %w", key, err)
	}
	plain, err := s.keyring.Open(key, st.Sealed)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", tenant, name, err)
	}
	var data map[string]string
	if err := json.Unmarshal(plain, &data); err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", tenant, name, err)
	}
	e := Entry{Actor: by, Action: "secret.read", Kind: v1.KindSecret, Tenant: tenant, Name: name, Result: "read",
		Message: "keys " + keyNames(st.Keys), RequestID: requestID(ctx)}
	if _, err := s.commit(ctx, e); err != nil {
		return nil, fmt.Errorf("audit the read of secret %s/%s: %w", tenant, name, err) // no unaudited read
	}
	return data, nil
}

// rotateSecretKey makes a new primary key, seals every secret again under
// it, and drops the older keys once none needs them (operators only).
func (s *Server) rotateSecretKey(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.authorize(ctx, auth.Apply, auth.Object{Kind: auth.KindSecretKey}, ""); err != nil {
		return err
	}
	if s.keyring == nil {
		return noKeyring()
	}
	id, err := s.keyring.Rotate()
	if err != nil {
		return err
	}
	n, err := s.reseal(ctx)
	out := wire.KeyRotation{KeyID: id, Resealed: n}
	if err != nil {
		// The new key is in place; what was not sealed again still opens
		// with the older keys, which stay. Rotating again finishes it.
		return fmt.Errorf("rotate secret key: %d sealed again, then: %w", n, err)
	}
	if err := s.keyring.Retire(); err != nil {
		return err
	}
	out.Retired = true
	p := principal(ctx)
	e := Entry{Actor: actor(p), Action: "secret.rotate-key", Kind: v1.KindSecret, Result: wire.Updated,
		Message: fmt.Sprintf("new key %s; %d secret(s) sealed again", id, n), RequestID: requestID(ctx)}
	if _, err := s.commit(ctx, e); err != nil {
		s.log.Warn("audit secret key rotation", "err", err)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// reseal seals every secret not under the primary key again.
func (s *Server) reseal(ctx context.Context) (int, error) {
	vals, _, err := s.store.List(ctx, secretsDir)
	if err != nil {
		return 0, err
	}
	primary, n := s.keyring.Primary(), 0
	for _, v := range vals {
		var st storedSecret
		if err := json.Unmarshal(v.Data, &st); err != nil {
			return n, fmt.Errorf("decode secret %s: %w", v.Key, err)
		}
		if st.Sealed.KeyID == primary {
			continue
		}
		plain, err := s.keyring.Open(v.Key, st.Sealed)
		if err != nil {
			return n, fmt.Errorf("secret %s: %w", v.Key, err)
		}
		st.Sealed = s.keyring.Seal(v.Key, plain)
		data, err := json.Marshal(st)
		if err != nil {
			return n, err
		}
		if _, err := s.store.Put(ctx, v.Key, data, v.Revision); err != nil {
			return n, fmt.Errorf("seal %s again: %w", v.Key, err)
		}
		n++
	}
	return n, nil
}
