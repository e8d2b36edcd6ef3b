package replica

import (
	"fmt"
	"time"

	gcrv1 "github.com/google/go-containerregistry/pkg/v1"
)

// Healthcheck is a command the agent runs inside a running replica, with
// the replica's own user, namespaces, seccomp and no capabilities: exit 0
// is healthy (DESIGN §8). It comes from the workload's spec.healthcheck, or
// else from the image's HEALTHCHECK.
type Healthcheck struct {
	// Command is run as is (exec form); a shell form is ["/bin/sh", "-c", S].
	Command []string `json:"command"`
	// Interval between checks, Timeout of one check (it is killed then and
	// counts as failed), StartPeriod after a start during which failures
	// don't count.
	Interval    time.Duration `json:"interval"`
	Timeout     time.Duration `json:"timeout"`
	StartPeriod time.Duration `json:"startPeriod,omitempty"`
	// Retries is how many failures in a row make the replica unhealthy.
	Retries int `json:"retries"`
}

// Defaults of a health check, as Docker's.
const (
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 30 * time.Second
	DefaultHealthRetries  = 3
)

// WithDefaults fills what h leaves out.
func (h Healthcheck) WithDefaults() Healthcheck {
	if h.Interval <= 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultHealthTimeout
	}
	if h.Retries <= 0 {
		h.Retries = DefaultHealthRetries
	}
	return h
}

// imageHealthcheck turns an image config's HEALTHCHECK into a check: nil
// for none or NONE. Its test is ["CMD", args…] or ["CMD-SHELL", script].
func imageHealthcheck(c *gcrv1.HealthConfig) (*Healthcheck, error) {
	if c == nil || len(c.Test) == 0 {
		return nil, nil
	}
	var cmd []string
	switch c.Test[0] {
	case "NONE":
		return nil, nil
	case "CMD":
		cmd = c.Test[1:]
	case "CMD-SHELL":
		if len(c.Test) != 2 {
			return nil, fmt.Errorf("%w: image HEALTHCHECK CMD-SHELL wants one script, has %d", ErrInvalid, len(c.Test)-1)
		}
		cmd = []string{"/bin/sh", "-c", c.Test[1]}
	default:
		return nil, fmt.Errorf("%w: image HEALTHCHECK %q: want CMD, CMD-SHELL or NONE", ErrInvalid, c.Test[0])
	}
	if len(cmd) == 0 || cmd[0] == "" {
		return nil, fmt.Errorf("%w: image HEALTHCHECK has no command", ErrInvalid)
	}
	h := Healthcheck{Command: cmd, Interval: c.Interval, Timeout: c.Timeout, StartPeriod: c.StartPeriod, Retries: c.Retries}.WithDefaults()
	return &h, nil
}

// effectiveHealthcheck is the spec's check, else the image's.
func effectiveHealthcheck(s Spec, c *gcrv1.HealthConfig) (*Healthcheck, error) {
	if s.Healthcheck != nil {
		h := s.Healthcheck.WithDefaults()
		return &h, nil
	}
	return imageHealthcheck(c)
}
