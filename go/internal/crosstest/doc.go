// Package crosstest holds the cross-language process tests: Go and Rust
// producers and consumers (the alloy-go and alloy test CLIs) on one named
// ring, exchanging the checked messages of doc/TESTING.md. It has no code
// of its own; the tests skip when ../bin/alloy (the Rust CLI, built by
// `make build`) is missing.
package crosstest
