//go:build !linux

package ring

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// The ring's other tests need Linux (they carry //go:build linux); here
// only the promise of platform_other.go is checked: every entry point fails
// with ErrUnsupportedPlatform, naming this system.
func TestEveryEntryPointIsUnsupported(t *testing.T) {
	ring := func(_ *Ring, err error) error { return err }
	cfg := DefaultConfig()
	for name, err := range map[string]error{
		"Create":           ring(Create("alloy-platform-test", cfg)),
		"CreateWith":       ring(CreateWith("alloy-platform-test", cfg, Options{Dir: t.TempDir()})),
		"Open":             ring(Open("alloy-platform-test")),
		"OpenWith":         ring(OpenWith("alloy-platform-test", Options{Dir: t.TempDir()})),
		"OpenForeign":      ring(OpenForeign("alloy-platform-test")),
		"OpenOrCreate":     ring(OpenOrCreate("alloy-platform-test", cfg)),
		"OpenOrCreateWith": ring(OpenOrCreateWith("alloy-platform-test", cfg, Options{Dir: t.TempDir()})),
		"CreateAnonymous":  ring(CreateAnonymous("alloy-platform-test", cfg)),
		"OpenFd":           ring(OpenFd(0)),
		"Remove":           Remove("alloy-platform-test"),
		"RemoveIn":         RemoveIn(t.TempDir(), "alloy-platform-test"),
		"StatNamed":        func() error { _, err := StatNamed("alloy-platform-test"); return err }(),
		"List":             func() error { _, err := List(); return err }(),
		"ListDir":          func() error { _, err := ListDir(t.TempDir()); return err }(),
		"RecvFd":           func() error { _, err := RecvFd(nil); return err }(),
	} {
		if !errors.Is(err, ErrUnsupportedPlatform) {
			t.Errorf("%s: %v, want ErrUnsupportedPlatform", name, err)
		} else if want := runtime.GOOS + "/" + runtime.GOARCH; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not name %s", name, err, want)
		}
	}
}
