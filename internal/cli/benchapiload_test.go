package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPageContinue: the listers of `rung bench api` find a page's continue
// value after its items, whatever the items hold.
func TestPageContinue(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		err              bool
	}{
		{"last page", "{\n  \"items\": [\n    {\"revision\": 3, \"object\": {\"a\":[1]}}\n  ],\n  \"revision\": 9\n}\n", "", false},
		{"more", "{\n  \"items\": [\n    {\"revision\": 3, \"object\": {\"a\":[\"],\\\"continue\\\": \\\"x\"]}}\n  ],\n  \"revision\": 9,\n  \"continue\": \"eyJhIjoiYiJ9\"\n}\n", "eyJhIjoiYiJ9", false},
		{"empty", "{\n  \"items\": [],\n  \"revision\": 2\n}\n", "", false},
		{"not a list", `{"error":"x"}`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pageContinue([]byte(tc.body))
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("continue (-want +got):\n%s", diff)
			}
		})
	}
}
