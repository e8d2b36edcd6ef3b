package cli

import (
	"strings"
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
			// Through the listers' tail writer, in pieces.
			var tw tailWriter
			body := append([]byte(strings.Repeat(" ", 5000)), tc.body...)
			for len(body) > 0 {
				n := min(len(body), 777)
				tw.Write(body[:n])
				body = body[n:]
			}
			got, err := pageContinue(tw.b)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("continue (-want +got):\n%s", diff)
			}
		})
	}
}
