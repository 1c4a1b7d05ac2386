//go:build alloy_ffi

package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The original Alloy's README output; the separator after [Go]/[Rust] is a TAB.
const seedOutput = `[2022-10-17 18:09:34] [INFO] [Go]	Exporting ArrowSchema and ArrowArray #1 to C
[2022-10-17 18:09:34] [INFO] [Go]	Exporting ArrowSchema and ArrowArray #2 to C
[2022-10-17 18:09:34] [INFO] [Go]	Exporting ArrowSchema and ArrowArray #3 to C
[2022-10-17 18:09:34] [INFO] [Go]	Calling Rust through C ffi now with 3 ArrowArrays
[2022-10-17 18:09:34] [INFO] [Rust]	Hello! Reading the ffi pointers now.
[2022-10-17 18:09:34] [INFO] [Rust]	array1: Int32[1, 2, 3, -4]
[2022-10-17 18:09:34] [INFO] [Rust]	array2: Int32[2, 3, 4, 5]
[2022-10-17 18:09:34] [INFO] [Rust]	array3: Int32[3, 4, 5, 6]
[2022-10-17 18:09:34] [INFO] [Go]	Hello, again! Successfully sent Arrow data to Rust.
[2022-10-17 18:09:34] [INFO] [Go]	Rust counted 3 arrays sent through ffi
`

var timestamp = regexp.MustCompile(`(?m)^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] `)

func maskTimestamps(s string) string { return timestamp.ReplaceAllString(s, "[TIME] ") }

func TestMain(m *testing.M) {
	if os.Getenv("ALLOY_ONESHOT_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestOutputMatchesSeed runs the program in a child process and compares
// everything it prints, Go's and Rust's lines together, with the seed's.
func TestOutputMatchesSeed(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ALLOY_ONESHOT_RUN_MAIN=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oneshot failed: %v\n%s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("unexpected stdout: %q", stdout.String())
	}
	got, want := maskTimestamps(stderr.String()), maskTimestamps(seedOutput)
	if !strings.Contains(got, "[TIME] ") {
		t.Fatalf("no timestamped line in output:\n%s", stderr.String())
	}
	gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gotLines), len(wantLines)); i++ {
		var g, w string
		if i < len(gotLines) {
			g = gotLines[i]
		}
		if i < len(wantLines) {
			w = wantLines[i]
		}
		if g != w {
			t.Errorf("line %d:\n got %q\nwant %q", i+1, g, w)
		}
	}
}

func TestMaskCanFail(t *testing.T) {
	// The comparison above must notice a changed word or a missing tab.
	for _, bad := range []string{
		strings.Replace(seedOutput, "array2", "array9", 1),
		strings.Replace(seedOutput, "[Rust]\t", "[Rust] ", 1),
	} {
		if maskTimestamps(bad) == maskTimestamps(seedOutput) {
			t.Fatal("masking hides a real difference")
		}
	}
}
