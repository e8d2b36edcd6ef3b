package image

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"rung.dev/rung/internal/uidrange"
)

// ParseHealthcheck turns what follows HEALTHCHECK CMD in a Dockerfile into
// a config test, as Docker does: a JSON array is the exec form
// (["CMD", exe, args…]), anything else the shell form (["CMD-SHELL",
// command], run by the image's /bin/sh); "NONE" disables a base image's
// check.
func ParseHealthcheck(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return nil, fmt.Errorf("%w: healthcheck is empty: give a command, e.g. '/bin/check --quick' or '[\"/bin/check\", \"--quick\"]'", ErrInvalidConfig)
	case s == "NONE":
		return []string{"NONE"}, nil
	case strings.HasPrefix(s, "["):
		var argv []string
		if err := json.Unmarshal([]byte(s), &argv); err != nil {
			return nil, fmt.Errorf("%w: healthcheck %s: not a JSON array of strings (%v); without brackets it runs in the image's shell", ErrInvalidConfig, s, err)
		}
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("%w: healthcheck %s: the exec form needs a program", ErrInvalidConfig, s)
		}
		return append([]string{"CMD"}, argv...), nil
	}
	return []string{"CMD-SHELL", s}, nil
}

// ParseUser checks a USER for packing: a numeric UID or UID:GID inside a
// tenant's user namespace (below uidrange.Size). The node maps only those
// ids and does not read the image's /etc/passwd, so a name or a larger id
// would pack an image that can never start.
func ParseUser(u string) (uid, gid uint32, err error) {
	bad := func(why string) (uint32, uint32, error) {
		return 0, 0, fmt.Errorf("%w: user %q: %s: use a numeric UID or UID:GID below %d, e.g. 1000 or 1000:1000", ErrInvalidConfig, u, why, uidrange.Size)
	}
	us, gs, hasGID := strings.Cut(u, ":")
	id := func(s string) (uint32, bool) {
		n, err := strconv.ParseUint(s, 10, 32)
		return uint32(n), err == nil && n < uint64(uidrange.Size)
	}
	uid, ok := id(us)
	if !ok {
		return bad("not a number in range (names are not looked up)")
	}
	gid = uid
	if hasGID {
		if gid, ok = id(gs); !ok {
			return bad("group is not a number in range")
		}
	}
	return uid, gid, nil
}

// validate refuses options that would make an image that can't run as
// asked, naming the option and the fix.
func (o *PackOptions) validate() error {
	if o.User != "" {
		if _, _, err := ParseUser(o.User); err != nil {
			return err
		}
	}
	if len(o.Healthcheck) > 0 {
		switch kind := o.Healthcheck[0]; {
		case kind == "NONE" && len(o.Healthcheck) == 1:
		case kind == "CMD" && len(o.Healthcheck) > 1 && o.Healthcheck[1] != "":
		case kind == "CMD-SHELL" && len(o.Healthcheck) == 2 && o.Healthcheck[1] != "":
		default:
			return fmt.Errorf("%w: healthcheck %q: want [CMD exe args…], [CMD-SHELL script] (one script) or [NONE]", ErrInvalidConfig, o.Healthcheck)
		}
	}
	timing := map[string]int64{
		"healthcheck interval": int64(o.HealthInterval), "healthcheck timeout": int64(o.HealthTimeout),
		"healthcheck start period": int64(o.HealthStartPeriod), "healthcheck retries": int64(o.HealthRetries),
	}
	for name, v := range timing {
		if v < 0 {
			return fmt.Errorf("%w: %s is negative", ErrInvalidConfig, name)
		}
		if v > 0 && (len(o.Healthcheck) == 0 || o.Healthcheck[0] == "NONE") {
			return fmt.Errorf("%w: %s given without a healthcheck command", ErrInvalidConfig, name)
		}
	}
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("%w: env %q: want KEY=VALUE", ErrInvalidConfig, e)
		}
	}
	return nil
}

// specialType names a device node, fifo or socket for notes.
func specialType(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	}
	return "socket"
}
