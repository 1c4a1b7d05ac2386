// Command alloy-go is the Go side's command-line tool: it creates, sends to
// and receives from Alloy shared-memory rings.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/ignalina/alloy/go/ring"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage: alloy-go <command> [flags]

commands:
  version   print the tool and layout version
  create    create a named ring: --ring NAME --slots N --slot-size BYTES
            [--max-subscribers S] [--max-members M] [--schema-capacity C]
  rm        remove a named ring: --ring NAME
  stat      print a ring's producer, consumers (lag, leases), fill and rates:
            NAME [--json] [--interval MS (200)] [--raw: every header field as JSON]
  watch     redraw stat live until Ctrl-C or the ring is removed: NAME [--interval MS (1000)]
  ls        list the Alloy rings under /dev/shm: [--json]
  send      send an Arrow IPC file or stream, then close: --ring NAME [--mode ipc] FILE
            or to a remote ring: --flight grpc://HOST:PORT --ring NAME FILE
  recv      print "ready", then write received batches to an Arrow IPC stream: --ring NAME --out FILE`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	err := run(cmd, args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "alloy-go %s: %v\n", cmd, err)
		if errors.Is(err, ring.ErrTruncated) {
			os.Exit(exitTruncated)
		}
		os.Exit(1)
	}
}

// exitTruncated is the exit status when a ring's file was truncated under
// the process (the Rust CLI exits with the same status on SIGBUS).
const exitTruncated = 3

// run runs one command. A memory fault in this goroutine (a ring's file
// truncated under the process raises SIGBUS on the next access to a page
// past its end) becomes an error wrapping ring.ErrTruncated, reported on
// one line, instead of a crash dump of every goroutine: the ring's own
// operations and arrowshm's readers and writers report it themselves
// (ring/fault.go); this catches the rest, e.g. arrow-go reading a record
// in place.
func run(cmd string, args []string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(interface{ Addr() uintptr })
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("%w: memory fault (SIGBUS) at %#x: a shared-memory ring's file was truncated under this process", ring.ErrTruncated, f.Addr())
		}
	}()
	switch cmd {
	case "version":
		fmt.Printf("alloy-go 0.1.0 (layout version %d)\n", ring.Version)
	case "create":
		err = create(args)
	case "rm":
		err = remove(args)
	case "stat":
		err = stat(args)
	case "watch":
		err = watch(args)
	case "ls":
		err = ls(args)
	case "send":
		err = send(args)
	case "recv":
		err = recv(args)
	case "arrow-gen":
		err = arrowGen(args)
	case "arrow-sink":
		err = arrowSink(args)
	case "test-produce":
		err = testProduce(args)
	case "test-consume":
		err = testConsume(args)
	default:
		fmt.Fprintf(os.Stderr, "alloy-go: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
	return err
}

// newFlags makes a subcommand's flag set; a parse error exits with status 2.
func newFlags(cmd string) *flag.FlagSet {
	return flag.NewFlagSet("alloy-go "+cmd, flag.ExitOnError)
}

func requireRing(name string) error {
	if name == "" {
		return fmt.Errorf("--ring is required")
	}
	return nil
}

func create(args []string) error {
	fs := newFlags("create")
	name := fs.String("ring", "", "ring name (under /dev/shm)")
	def := ring.DefaultConfig()
	slots := fs.Uint("slots", uint(def.SlotCount), "number of slots (power of two)")
	slotSize := fs.Uint("slot-size", uint(def.SlotSize), "slot payload bytes (multiple of 64)")
	subs := fs.Uint("max-subscribers", uint(def.MaxSubscribers), "subscriber table entries")
	members := fs.Uint("max-members", uint(def.MaxMembers), "member table entries")
	schema := fs.Uint("schema-capacity", uint(def.SchemaCapacity), "schema area bytes (multiple of 64)")
	fs.Parse(args)
	if err := requireRing(*name); err != nil {
		return err
	}
	cfg := ring.Config{
		SlotCount: uint32(*slots), SlotSize: uint32(*slotSize),
		MaxSubscribers: uint32(*subs), MaxMembers: uint32(*members), SchemaCapacity: uint32(*schema),
	}
	if uint64(*slots) != uint64(cfg.SlotCount) || uint64(*slotSize) != uint64(cfg.SlotSize) {
		return fmt.Errorf("--slots or --slot-size out of range")
	}
	r, err := ring.Create(*name, cfg)
	if err != nil {
		return err
	}
	return r.Close()
}

func remove(args []string) error {
	fs := newFlags("rm")
	name := fs.String("ring", "", "ring name (under /dev/shm)")
	fs.Parse(args)
	if err := requireRing(*name); err != nil {
		return err
	}
	return ring.Remove(*name)
}
