package vulndb

import (
	"fmt"
	"math"
	"strings"
)

// CVSS3Score computes the base score of a CVSS v3.0 or v3.1 vector
// ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" is 9.8), with the
// formulas and the Roundup function of the CVSS v3.1 specification §7.
func CVSS3Score(vector string) (float64, error) {
	parts := strings.Split(vector, "/")
	if len(parts) < 9 || (parts[0] != "CVSS:3.0" && parts[0] != "CVSS:3.1") {
		return 0, fmt.Errorf("%w: not a CVSS v3 vector: %q", ErrInvalidEntry, vector)
	}
	m := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, ":")
		if !ok {
			return 0, fmt.Errorf("%w: CVSS metric %q", ErrInvalidEntry, p)
		}
		m[k] = v
	}
	changed := m["S"] == "C"
	weights := map[string]map[string]float64{
		"AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
		"AC": {"L": 0.77, "H": 0.44},
		"PR": {"N": 0.85, "L": 0.62, "H": 0.27},
		"UI": {"N": 0.85, "R": 0.62},
		"C":  {"H": 0.56, "L": 0.22, "N": 0},
		"I":  {"H": 0.56, "L": 0.22, "N": 0},
		"A":  {"H": 0.56, "L": 0.22, "N": 0},
	}
	if changed {
		weights["PR"]["L"], weights["PR"]["H"] = 0.68, 0.5
	}
	w := map[string]float64{}
	for metric, values := range weights {
		v, ok := values[m[metric]]
		if !ok {
			return 0, fmt.Errorf("%w: CVSS vector %q: metric %s=%q", ErrInvalidEntry, vector, metric, m[metric])
		}
		w[metric] = v
	}
	if s := m["S"]; s != "U" && s != "C" {
		return 0, fmt.Errorf("%w: CVSS vector %q: metric S=%q", ErrInvalidEntry, vector, s)
	}
	iss := 1 - (1-w["C"])*(1-w["I"])*(1-w["A"])
	impact := 6.42 * iss
	if changed {
		impact = 7.52*(iss-0.029) - 3.25*math.Pow(iss-0.02, 15)
	}
	exploit := 8.22 * w["AV"] * w["AC"] * w["PR"] * w["UI"]
	if impact <= 0 {
		return 0, nil
	}
	if changed {
		return roundup(math.Min(1.08*(impact+exploit), 10)), nil
	}
	return roundup(math.Min(impact+exploit, 10)), nil
}

// roundup is CVSS v3.1's Roundup: the smallest number with one decimal
// that is at least x, computed on integers to avoid float artefacts.
func roundup(x float64) float64 {
	i := int64(math.Round(x * 100000))
	if i%10000 == 0 {
		return float64(i) / 100000
	}
	return float64(i/10000+1) / 10
}
