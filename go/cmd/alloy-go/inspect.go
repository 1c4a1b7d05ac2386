package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/ignalina/alloy/go/ring"
)

// ringArg is the ring name, given as the one argument or with --ring.
func ringArg(flagName string, args []string) (string, error) {
	switch {
	case flagName != "" && len(args) > 0:
		return "", errors.New("give the ring name either as NAME or with --ring, not both")
	case flagName != "":
		return flagName, nil
	case len(args) == 1:
		return args[0], nil
	case len(args) > 1:
		return "", fmt.Errorf("unexpected arguments %q", args[1:])
	}
	return "", errors.New("a ring NAME (or --ring NAME) is required")
}

// stat prints a ring's state (doc/README.md, "Inspection") from a
// read-only mapping: a table, or with --json the fields shared with the
// Rust `alloy stat --json`. --raw prints the whole decoded region instead
// (header, tables, slot headers), for debugging the layout itself.
func stat(args []string) error {
	fs := newFlags("stat")
	name := fs.String("ring", "", "ring name (in $ALLOY_SHM_DIR or /dev/shm)")
	asJSON := fs.Bool("json", false, "print one line of JSON")
	interval := fs.Uint("interval", uint(ring.DefaultStatInterval/time.Millisecond), "milliseconds between the two samples the rates come from (0: one sample, no rates)")
	raw := fs.Bool("raw", false, "print every header field, table entry and slot header as JSON")
	n, err := ringArg(*name, parseFlags(fs, args, 1))
	if err != nil {
		return err
	}
	if *raw {
		return rawStat(n)
	}
	s, err := ring.StatNamed(n)
	if err != nil {
		return ringError(n, err)
	}
	if *interval > 0 {
		time.Sleep(time.Duration(*interval) * time.Millisecond)
		next, err := ring.StatNamed(n)
		if err != nil {
			return err
		}
		s = next.WithRates(s)
	}
	if *asJSON {
		return printJSON(s)
	}
	fmt.Print(s.Render())
	return nil
}

// rawStat prints the ring's Snapshot without payloads.
func rawStat(name string) error {
	r, err := ring.Open(name)
	if err != nil {
		return ringError(name, err)
	}
	defer r.Close()
	s := r.Snapshot()
	for i := range s.Slots {
		s.Slots[i].Payload = nil
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// watch redraws stat in the terminal every --interval until interrupted
// or until the ring is removed.
func watch(args []string) error {
	fs := newFlags("watch")
	name := fs.String("ring", "", "ring name (in $ALLOY_SHM_DIR or /dev/shm)")
	interval := fs.Uint("interval", 1000, "refresh period in milliseconds")
	n, err := ringArg(*name, parseFlags(fs, args, 1))
	if err != nil {
		return err
	}
	if *interval == 0 {
		return errors.New("--interval must be at least 1 ms")
	}
	period := time.Duration(*interval) * time.Millisecond
	tty := term.IsTerminal(int(os.Stdout.Fd()))
	ino, ok := inode(n)
	if !ok {
		return fmt.Errorf("ring %q does not exist", n)
	}
	prev, err := ring.StatNamed(n)
	if err != nil {
		return ringError(n, err)
	}
	for {
		time.Sleep(period)
		if now, ok := inode(n); !ok || now != ino {
			fmt.Printf("alloy-go watch: ring %q was removed\n", n)
			return nil
		}
		s, err := ring.StatNamed(n)
		if err != nil {
			return err
		}
		s = s.WithRates(prev)
		if tty {
			// Home the cursor and clear the screen, then redraw.
			fmt.Printf("\x1b[H\x1b[2J%s\n(every %d ms; Ctrl-C to quit)\n", s.Render(), *interval)
		} else {
			// Into a pipe or file: frames one after the other, no escape codes.
			fmt.Printf("%s\n", s.Render())
		}
		prev = s
	}
}

// inode identifies the ring's file, to notice its removal (the mapping
// outlives an unlink) or a new ring under the same name.
func inode(name string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(ring.NamedPath(name), &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// ls lists the Alloy rings in ring.ShmDir() ($ALLOY_SHM_DIR or /dev/shm).
func ls(args []string) error {
	fs := newFlags("ls")
	asJSON := fs.Bool("json", false, "print JSON")
	dir := fs.String("dir", "", "directory to scan (default: --shm-dir, $ALLOY_SHM_DIR or /dev/shm)")
	parseFlags(fs, args, 0)
	if *dir == "" {
		*dir = ring.ShmDir()
	}
	all, err := ring.ListDir(*dir)
	if err != nil {
		return err
	}
	// A file this user cannot read cannot be shown to be an Alloy ring
	// (other users' files under /dev/shm): not listed.
	rings := make([]ring.Listing, 0, len(all))
	for _, r := range all {
		if r.Error == nil || !strings.HasPrefix(*r.Error, "cannot read") {
			rings = append(rings, r)
		}
	}
	if *asJSON {
		return printJSON(rings)
	}
	if len(rings) == 0 {
		fmt.Printf("no Alloy rings in %s\n", *dir)
		return nil
	}
	fmt.Printf("%-32s %7s %12s %7s %10s  producer\n", "name", "version", "size", "slots", "slot_size")
	for _, r := range rings {
		producer := "none"
		switch {
		case r.Error != nil:
			producer = "error: " + *r.Error
		case r.ProducerPid != 0 && r.ProducerAlive:
			producer = fmt.Sprintf("pid %d (alive)", r.ProducerPid)
		case r.ProducerPid != 0:
			producer = fmt.Sprintf("pid %d (DEAD)", r.ProducerPid)
		}
		fmt.Printf("%-32s %7d %12d %7d %10d  %s\n", r.Name, r.Version, r.Size, r.SlotCount, r.SlotSize, producer)
	}
	return nil
}
