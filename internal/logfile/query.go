package logfile

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// MaxTailLines bounds ReadOptions.Tail in a query.
const MaxTailLines = 100000

// Query turns read options into the query of rung's log endpoints (the
// API's and a node agent's).
func Query(o ReadOptions) url.Values {
	q := url.Values{}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.Previous {
		q.Set("previous", "1")
	}
	if o.Timestamps {
		q.Set("timestamps", "1")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// ParseQuery reads the query of the log endpoints.
func ParseQuery(q url.Values) (ReadOptions, error) {
	o := ReadOptions{Follow: q.Get("follow") != "", Previous: q.Get("previous") != "", Timestamps: q.Get("timestamps") != ""}
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxTailLines {
			return o, fmt.Errorf("tail %q: want a number of lines from 0 (all) to %d", v[:min(len(v), 32)], MaxTailLines)
		}
		o.Tail = n
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return o, fmt.Errorf("since %q: want an RFC 3339 time such as 2026-12-04T10:00:00Z", v[:min(len(v), 64)])
		}
		o.Since = t
	}
	if o.Follow && o.Previous {
		return o, errors.New("follow and previous: the previous run's log does not grow; ask for one of them")
	}
	return o, nil
}
