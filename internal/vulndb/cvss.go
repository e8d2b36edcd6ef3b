package vulndb

import (
	"fmt"
	"strings"

	gocvss20 "github.com/pandatix/go-cvss/20"
	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
	gocvss40 "github.com/pandatix/go-cvss/40"
)

// OSV severity types that carry a CVSS vector
// (https://ossf.github.io/osv-schema/#severityscore).
const (
	typeCVSSv2 = "CVSS_V2" // "AV:N/AC:L/Au:N/C:P/I:N/A:N", no prefix
	typeCVSSv3 = "CVSS_V3" // "CVSS:3.0/..." or "CVSS:3.1/..."
	typeCVSSv4 = "CVSS_V4" // "CVSS:4.0/..."
)

// maxVectorLen bounds the vector CVSSScore parses and names in its errors:
// the longest valid vector (CVSS v4.0 with every threat, environmental and
// supplemental metric) is under 200 bytes, and an error must not carry
// megabytes of a hostile record into the import's error or the log.
const maxVectorLen = 512

// v4NonBase are the CVSS v4.0 threat and environmental metrics. go-cvss's
// Score applies whichever of them a vector sets (it returns CVSS-BT, -BE or
// -BTE), so CVSSScore resets them to X ("not defined") to get CVSS-B.
// Supplemental metrics (S, AU, R, V, RE, U) never change a v4 score, so they
// are left alone.
var v4NonBase = []string{"E", "CR", "IR", "AR", "MAV", "MAC", "MAT", "MPR", "MUI", "MVC", "MVI", "MVA", "MSC", "MSI", "MSA"}

// CVSSScore returns the CVSS base score of vector, the score of an OSV
// severity entry of type typ (CVSS_V2, CVSS_V3 or CVSS_V4), computed by
// go-cvss. Temporal, threat and environmental metrics in the vector are
// validated but do not change the result: rung ranks advisories by their
// intrinsic severity, the same for every tenant. For v4 the result is what
// FIRST calls CVSS-B. A vector that does not parse, or whose version does
// not match typ, is an error wrapping ErrInvalidEntry.
func CVSSScore(typ, vector string) (float64, error) {
	if len(vector) > maxVectorLen {
		return 0, fmt.Errorf("%w: %s vector %q... is %d bytes, longer than %d", ErrInvalidEntry, typ, vector[:32], len(vector), maxVectorLen)
	}
	score, err := cvssScore(typ, vector)
	if err != nil {
		return 0, fmt.Errorf("%w: %s vector %q: %v", ErrInvalidEntry, typ, vector, err)
	}
	return score, nil
}

func cvssScore(typ, vector string) (float64, error) {
	switch typ {
	case typeCVSSv2:
		v, err := gocvss20.ParseVector(vector)
		if err != nil {
			return 0, err
		}
		return v.BaseScore(), nil
	case typeCVSSv3:
		// go-cvss has one package per minor version; each checks its own
		// prefix, so anything else (including a v4 vector) is rejected here.
		switch {
		case strings.HasPrefix(vector, "CVSS:3.0/"):
			v, err := gocvss30.ParseVector(vector)
			if err != nil {
				return 0, err
			}
			return v.BaseScore(), nil
		case strings.HasPrefix(vector, "CVSS:3.1/"):
			v, err := gocvss31.ParseVector(vector)
			if err != nil {
				return 0, err
			}
			return v.BaseScore(), nil
		}
		return 0, fmt.Errorf("want prefix CVSS:3.0/ or CVSS:3.1/")
	case typeCVSSv4:
		v, err := gocvss40.ParseVector(vector)
		if err != nil {
			return 0, err
		}
		for _, m := range v4NonBase {
			if err := v.Set(m, "X"); err != nil {
				return 0, err
			}
		}
		return v.Score(), nil
	}
	return 0, fmt.Errorf("not a CVSS severity type")
}

// cvssRating is the qualitative rating, in the words of Advisory.Severity,
// of a base score of OSV type typ. v3 and v4 use their specifications'
// scale (None 0, Low 0.1-3.9, Medium 4.0-6.9, High 7.0-8.9, Critical
// 9.0-10.0; v3.0 and v3.1 share it). CVSS v2 defines no scale; rung uses
// NVD's (Low 0.0-3.9, Medium 4.0-6.9, High 7.0-10.0), so a v2 score is never
// critical and 0.0 is low.
func cvssRating(typ string, score float64) string {
	var word string
	switch typ {
	case typeCVSSv2:
		switch {
		case score >= 7:
			return "high"
		case score >= 4:
			return "medium"
		}
		return "low"
	case typeCVSSv3:
		word, _ = gocvss31.Rating(score)
	case typeCVSSv4:
		word, _ = gocvss40.Rating(score)
	}
	if word == "NONE" {
		return ""
	}
	return strings.ToLower(word)
}
