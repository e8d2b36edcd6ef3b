package policy

import (
	"strconv"
	"strings"
)

// SARIF types: the subset of the Static Analysis Results Interchange Format
// 2.1.0 (OASIS) that admission decisions need. Code-scanning tools (GitHub,
// GitLab, DefectDojo) read it.
type (
	// SARIFLog is a SARIF 2.1.0 document.
	SARIFLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []SARIFRun `json:"runs"`
	}
	// SARIFRun is one run of one tool.
	SARIFRun struct {
		Tool    SARIFTool     `json:"tool"`
		Results []SARIFResult `json:"results"`
	}
	// SARIFTool names the tool and its rules.
	SARIFTool struct {
		Driver SARIFDriver `json:"driver"`
	}
	// SARIFDriver is the tool's main component.
	SARIFDriver struct {
		Name           string      `json:"name"`
		InformationURI string      `json:"informationUri,omitempty"`
		Rules          []SARIFRule `json:"rules"`
	}
	// SARIFRule is one check.
	SARIFRule struct {
		ID                   string         `json:"id"`
		ShortDescription     SARIFText      `json:"shortDescription"`
		Help                 SARIFText      `json:"help"`
		DefaultConfiguration SARIFConfig    `json:"defaultConfiguration"`
		Properties           map[string]any `json:"properties,omitempty"`
	}
	// SARIFConfig is a rule's default level.
	SARIFConfig struct {
		Level string `json:"level"`
	}
	// SARIFText is a plain-text message.
	SARIFText struct {
		Text string `json:"text"`
	}
	// SARIFResult is one finding.
	SARIFResult struct {
		RuleID    string          `json:"ruleId"`
		RuleIndex int             `json:"ruleIndex"`
		Level     string          `json:"level"`
		Message   SARIFText       `json:"message"`
		Locations []SARIFLocation `json:"locations"`
	}
	// SARIFLocation is where a finding is: a file in the image and the
	// image itself.
	SARIFLocation struct {
		PhysicalLocation *SARIFPhysical `json:"physicalLocation,omitempty"`
		LogicalLocations []SARIFLogical `json:"logicalLocations,omitempty"`
	}
	// SARIFPhysical is a file.
	SARIFPhysical struct {
		ArtifactLocation SARIFArtifact `json:"artifactLocation"`
	}
	// SARIFArtifact is a file's URI, relative to the image root.
	SARIFArtifact struct {
		URI string `json:"uri"`
	}
	// SARIFLogical is the image or workload judged.
	SARIFLogical struct {
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

// SARIF renders decisions as one SARIF 2.1.0 run of the tool "rung".
// Findings are results of level "error"; notes are "note". Each rule
// carries the "security-severity" property (a CVSS-like score) that code
// scanning uses to rank results.
func SARIF(decisions ...Decision) *SARIFLog {
	run := SARIFRun{
		Tool:    SARIFTool{Driver: SARIFDriver{Name: "rung", InformationURI: "https://rung.dev", Rules: []SARIFRule{}}},
		Results: []SARIFResult{},
	}
	index := map[string]int{}
	add := func(d *Decision, f Finding, level string) {
		// A vulnerability is its own rule, as code scanning expects; the
		// check that found it is a property.
		id, title := f.ID, f.Title
		props := map[string]any{"security-severity": securitySeverity(f.Severity), "tags": []string{"security"}}
		if f.Advisory != "" {
			id, title = f.Advisory, f.Detail
			props["check"] = f.ID
			props["tags"] = []string{"security", "vulnerability"}
		}
		if len(f.Refs) > 0 {
			props["refs"] = f.Refs
		}
		i, ok := index[id]
		if !ok {
			i = len(run.Tool.Driver.Rules)
			index[id] = i
			run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, SARIFRule{
				ID: id, ShortDescription: SARIFText{title}, Help: SARIFText{f.Fix},
				DefaultConfiguration: SARIFConfig{Level: level}, Properties: props,
			})
		}
		subject := d.Subject
		if d.Digest != "" && !strings.Contains(subject, "@") {
			subject += "@" + d.Digest
		}
		// Code scanning wants a physical location on every result: the file
		// in the image, or else the image itself (as Trivy reports it).
		uri := d.Subject
		if f.Path != "" {
			uri = strings.TrimPrefix(f.Path, "/")
		}
		loc := SARIFLocation{
			PhysicalLocation: &SARIFPhysical{ArtifactLocation: SARIFArtifact{URI: uri}},
			LogicalLocations: []SARIFLogical{{FullyQualifiedName: subject, Kind: d.Kind}},
		}
		run.Results = append(run.Results, SARIFResult{
			RuleID: id, RuleIndex: i, Level: level,
			Message:   SARIFText{Text: f.Detail + " [" + f.Severity.String() + "]. Fix: " + f.Fix},
			Locations: []SARIFLocation{loc},
		})
	}
	for i := range decisions {
		d := &decisions[i]
		for _, f := range d.Findings {
			add(d, f, "error")
		}
		for _, f := range d.Notes {
			add(d, f, "note")
		}
	}
	return &SARIFLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []SARIFRun{run},
	}
}

// securitySeverity maps a severity to the score GitHub code scanning reads
// (over 9 critical, 7-8.9 high, 4-6.9 medium, under 4 low).
func securitySeverity(s Severity) string {
	score := map[Severity]float64{SeverityCritical: 9.5, SeverityHigh: 8, SeverityMedium: 5.5, SeverityLow: 2}[s]
	return strconv.FormatFloat(score, 'f', 1, 64)
}
