// Package crosstest holds the process tests of the test CLIs: Go and Rust
// producers and consumers (alloy-go and alloy) on one named ring,
// exchanging the checked messages of doc/TESTING.md. It has no code of its
// own. The cross-language tests skip when ../bin/alloy (the Rust CLI, built
// by `make build`) is missing; the Go-only CLI test always runs.
package crosstest
