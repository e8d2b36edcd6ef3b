package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/server/wire"
)

// Operator admission rules (DESIGN §6): the stored Policies'
// spec.admission adds CEL rules to the built-in checks (never removes
// one) and may tighten the image age. The engine is built from the stored
// Policies when a workload is admitted, so a Policy change applies to the
// next admission; engines are immutable and cached by their configuration.

// maxPolicyChecks bounds the Policies a workload write checks are
// unchanged (with maxTopologyChecks, well inside store.MaxTxnOps); past
// it, a Policy changed concurrently applies from the next admission.
const maxPolicyChecks = 16

// maxCachedEngines bounds engineCache; past it the cache starts over.
const maxCachedEngines = 32

// engineCache maps the JSON of a policy.Config to its compiled Engine.
// Engines are pure and immutable, so one cache serves every Server.
var engineCache struct {
	sync.Mutex
	m map[string]*policy.Engine
}

// admissionEngine returns the engine for the stored Policies, with the
// keys and revisions of the Policies it was built from (for the write to
// check they are unchanged when it commits). Without any admission
// section it is s.admission, the built-in checks.
func (s *Server) admissionEngine(ctx context.Context) (*policy.Engine, map[string]int64, error) {
	set, revs, err := s.stored(ctx, "", kindPolicy)
	if err != nil {
		return nil, nil, err
	}
	eng, err := engineFor(set.Policies, s.admission)
	if err != nil {
		// Applying such a Policy is refused (checkAdmission), so this is
		// a stored Policy from before; fail closed.
		return nil, nil, newError(http.StatusUnprocessableEntity, wire.CodeRejected,
			"the stored Policies' admission rules do not compile, so nothing is admitted; an operator must fix them: %v", err)
	}
	return eng, revs, nil
}

// engineFor compiles the admission section of policies, reusing a cached
// engine for the same configuration; builtin is returned when there is
// none.
func engineFor(policies []v1.Policy, builtin *policy.Engine) (*policy.Engine, error) {
	cfg, err := policy.FromPolicies(policies)
	if err != nil {
		return nil, err
	}
	if len(cfg.Rules) == 0 && cfg.MaxImageAge == 0 {
		return builtin, nil
	}
	key, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	engineCache.Lock()
	eng := engineCache.m[string(key)]
	engineCache.Unlock()
	if eng != nil {
		return eng, nil
	}
	if eng, err = policy.New(cfg); err != nil {
		return nil, err
	}
	engineCache.Lock()
	if engineCache.m == nil || len(engineCache.m) >= maxCachedEngines {
		engineCache.m = map[string]*policy.Engine{}
	}
	engineCache.m[string(key)] = eng
	engineCache.Unlock()
	return eng, nil
}

// checkAdmission refuses Policies whose admission rules do not compile
// (bad CEL, a built-in check's ID, an ID used twice), naming each rule.
func checkAdmission(policies []v1.Policy) error {
	if _, err := engineFor(policies, nil); err != nil {
		var details []string
		for _, e := range unwrapAll(err) {
			if e != nil {
				details = append(details, strings.ReplaceAll(e.Error(), "\n", " "))
			}
		}
		he := newError(http.StatusUnprocessableEntity, wire.CodeInvalid, "policy admission rules do not compile: %s", strings.Join(details, "; "))
		he.Details = details
		he.Err = errors.Join(policy.ErrInvalidRule, err)
		return he
	}
	return nil
}

// admissionError is the rejection of a workload by admission, listing
// every finding as "ID title: detail (fix: …)".
func admissionError(w *v1.Workload, d *policy.Decision) error {
	he := newError(http.StatusUnprocessableEntity, wire.CodeRejected, "workload %s/%s rejected by admission", w.Metadata.Tenant, w.Metadata.Name)
	for _, f := range d.Findings {
		he.Details = append(he.Details, fmt.Sprintf("%s %s: %s (fix: %s)", f.ID, f.Title, f.Detail, f.Fix))
	}
	he.Err = d.Err()
	return he
}
