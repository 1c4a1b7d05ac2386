package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ignalina/alloy/go/ring"
)

// parseFlags parses a subcommand's arguments with flags before or after the
// positional ones (`send FILE --ring R` as well as `send --ring R FILE`;
// package flag alone stops at the first positional), and checks that at
// most maxPos positional arguments remain. `-h`/`--help` print the
// command's usage and exit 0; a bad flag exits 2.
func parseFlags(fs *flag.FlagSet, args []string, maxPos int) []string {
	fs.Parse(reorderFlags(fs, args))
	if fs.NArg() > maxPos {
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args()[maxPos:])
		fs.Usage()
		os.Exit(2)
	}
	return fs.Args()
}

// reorderFlags moves the flags (with their values) in front of the
// positional arguments. A flag takes the next argument as its value unless
// it is a boolean flag or written as --flag=value. `--` ends the flags;
// `-` alone is a positional (standard input).
func reorderFlags(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			f := fs.Lookup(name)
			if f == nil {
				continue // flag.Parse reports it
			}
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(append(flags, "--"), pos...)
}

// ringName registers --ring on fs; after parsing, name(pos) is the ring
// name given either as the one positional argument or with --ring (both
// tools accept both forms for every command that takes one ring).
func ringName(fs *flag.FlagSet) func(pos []string) (string, error) {
	flagName := fs.String("ring", "", "ring `NAME` (or give NAME as the argument)")
	return func(pos []string) (string, error) { return ringArg(*flagName, pos) }
}

// checkNewName refuses a name for a new ring that would read as an option.
func checkNewName(name string) error {
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("ring name %q begins with '-': ring names may not (it reads as an option)", name)
	}
	return nil
}

// parseTimeout parses a --timeout value as the Rust tool does: a number
// with a unit (500ms, 2s, 1.5m, 1h; also us) or a bare number of seconds.
func parseTimeout(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q (examples: 500ms, 2s, 1.5m, 1h; a bare number is seconds)", s)
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(c rune) bool { return !(c >= '0' && c <= '9' || c == '.') })
	if i < 0 {
		i = len(t)
	}
	v, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || t[:i] == "" || strings.ContainsAny(t[:i], "eE+-") {
		return 0, bad
	}
	scale := map[string]float64{"": 1, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "m": 60, "h": 3600}
	k, ok := scale[t[i:]]
	if !ok {
		return 0, bad
	}
	secs := v * k
	if secs <= 0 || secs > 1e9 {
		return 0, fmt.Errorf("%v: must be more than 0", bad)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// timeoutFlag is --timeout DURATION.
type timeoutFlag struct{ d time.Duration }

func (t *timeoutFlag) String() string {
	if t == nil || t.d == 0 {
		return ""
	}
	return t.d.String()
}

func (t *timeoutFlag) Set(s string) error {
	d, err := parseTimeout(s)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "invalid duration "))
	}
	t.d = d
	return nil
}

// ringError says that a file is not an Alloy ring when it is not (all
// zero, zero after the magic, another magic), as the Rust tool does,
// rather than pointing at an unfinished creator or a build mismatch.
func ringError(name string, err error) error {
	if err == nil {
		return nil
	}
	hdr := make([]byte, 12)
	f, ferr := os.Open(ring.NamedPath(name))
	if ferr == nil {
		defer f.Close()
		io.ReadFull(f, hdr)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("ring %q does not exist", name) // as the Rust tool says
	case errors.Is(err, ring.ErrNotInitialized):
		return fmt.Errorf("%s: not an Alloy ring: its header is all zero (or its creator died while creating it)", name)
	case errors.Is(err, ring.ErrVersionMismatch) && binary.LittleEndian.Uint32(hdr[8:]) == 0:
		return fmt.Errorf("%s: not an Alloy ring: layout version 0 after the \"ALLOYSHM\" magic (versions start at 1)", name)
	case errors.Is(err, ring.ErrBadMagic):
		return fmt.Errorf("%s: not an Alloy ring: it does not begin with \"ALLOYSHM\" (found 0x%016x)", name, binary.LittleEndian.Uint64(hdr))
	}
	return err
}
