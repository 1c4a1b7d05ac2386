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

// usageText is the tool's help; the Rust tool alloy takes the same commands
// and arguments.
const usageText = `usage: alloy-go <command> [arguments]   (alloy-go <command> -h: its flags)

commands (the Rust tool alloy takes the same):
  version   print the tool and layout version (also --version)
  create    create a named ring: NAME (or --ring NAME) [--slots N (64)]
            [--slot-size BYTES (1048576)] [--max-subscribers S (16)]
            [--max-members M (32)] [--schema-capacity C (65536)]
            [--group NAME|GID: share with a group, mode 0660]
            [--huge-pages off|prefer|require] [--prefault]
  rm        remove a named ring: NAME (or --ring NAME)
  stat      print a ring's producer, consumers (lag, leases), fill and rates:
            NAME [--json] [--interval MS (200)] [--raw: every header field as JSON]
  watch     redraw stat live until Ctrl-C or the ring is removed: NAME [--interval MS (1000)]
  ls        list the Alloy rings under /dev/shm (or --shm-dir): [--json]
  send      send an Arrow IPC file or stream (LZ4/ZSTD-compressed too), then close
            the stream: --ring NAME [--mode ipc|cdata] [--resume] [--new-stream] FILE
            (FILE - is standard input; a pipe or FIFO is sent batch by batch),
            or to a remote ring: --flight grpc://HOST:PORT --ring NAME FILE
  recv      print "ready" once every check passed, then write the received batches
            to an Arrow IPC stream: --ring NAME --out FILE (- : standard output)
            [--timeout DURATION] [--compression lz4|zstd|none]
            The file is written as FILE.partial and renamed to FILE at the end;
            every ending (end of stream, Ctrl-C/SIGTERM, --timeout, a dead
            producer, the ring removed or re-created, a refused message) leaves
            a complete Arrow IPC stream of the batches received whole and one
            line saying what happened; if the file cannot be written (disk full)
            or no schema arrived, no file is left. Exit status: 0 at end of
            stream, 124 after --timeout, 128+N after signal N, else 1.
  help      this text

Every command takes --shm-dir DIR: named rings live in DIR instead of
/dev/shm (the same as setting ALLOY_SHM_DIR=DIR, which both tools and
both libraries read).`

func usage() { fmt.Fprintln(os.Stderr, usageText) }

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "-h", "--help", "-help", "help":
		fmt.Println(usageText)
		return
	case "--version", "-version", "-V":
		cmd = "version"
	}
	err := run(cmd, args)
	var ex exitError
	if errors.As(err, &ex) {
		fmt.Fprintf(os.Stderr, "alloy-go %s: %s\n", cmd, ex.msg)
		os.Exit(ex.code)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "alloy-go %s: %v\n", cmd, err)
		if errors.Is(err, ring.ErrTruncated) {
			os.Exit(exitTruncated)
		}
		os.Exit(1)
	}
}

// exitError ends the tool with its message and exit status (recv's
// endings other than the end of stream).
type exitError struct {
	msg  string
	code int
}

func (e exitError) Error() string { return e.msg }

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
		fs := newFlags("version")
		parseFlags(fs, args, 0)
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
	fs := flag.NewFlagSet("alloy-go "+cmd, flag.ExitOnError)
	// Every command takes it, as the Rust tool's global --shm-dir.
	fs.Func("shm-dir", "directory of named rings instead of /dev/shm (sets $"+ring.ShmDirEnv+", which both languages read)", func(dir string) error {
		return os.Setenv(ring.ShmDirEnv, dir)
	})
	return fs
}

func requireRing(name string) error {
	if name == "" {
		return fmt.Errorf("--ring is required")
	}
	return nil
}

func create(args []string) error {
	fs := newFlags("create")
	name := ringName(fs)
	def := ring.DefaultConfig()
	slots := fs.Uint("slots", uint(def.SlotCount), "number of slots (power of two)")
	slotSize := fs.Uint("slot-size", uint(def.SlotSize), "slot payload bytes (multiple of 64): the largest message")
	subs := fs.Uint("max-subscribers", uint(def.MaxSubscribers), "subscriber entries (broadcast consumers + queue groups)")
	members := fs.Uint("max-members", uint(def.MaxMembers), "member entries (attached consumer handles)")
	schema := fs.Uint("schema-capacity", uint(def.SchemaCapacity), "bytes reserved for the stream schema")
	group := fs.String("group", "", "share the ring with this group, NAME or GID (mode 0660): consumers of other users in it may attach")
	huge := fs.String("huge-pages", "off", "huge-page backing: off, prefer (fall back to normal pages) or require (the ring's directory must be a hugetlbfs mount with free pages reserved)")
	prefault := fs.Bool("prefault", false, "populate the ring's page tables at creation, so the first messages take no page faults")
	n, err := name(parseFlags(fs, args, 1))
	if err != nil {
		return err
	}
	if err := checkNewName(n); err != nil {
		return err
	}
	cfg := ring.Config{
		SlotCount: uint32(*slots), SlotSize: uint32(*slotSize),
		MaxSubscribers: uint32(*subs), MaxMembers: uint32(*members), SchemaCapacity: uint32(*schema),
	}
	if uint64(*slots) != uint64(cfg.SlotCount) || uint64(*slotSize) != uint64(cfg.SlotSize) {
		return fmt.Errorf("--slots or --slot-size out of range")
	}
	o := ring.Options{Group: *group, Prefault: *prefault}
	switch *huge {
	case "off":
	case "prefer":
		o.HugePages = ring.HugePagesPrefer
	case "require":
		o.HugePages = ring.HugePagesRequire
	default:
		return fmt.Errorf("--huge-pages %q: use off, prefer or require", *huge)
	}
	r, err := ring.CreateWith(n, cfg, o)
	if err != nil {
		return err
	}
	// The same line as the Rust tool's.
	fmt.Printf("created ring %q: %d slots x %d bytes, %d bytes total\n", n, cfg.SlotCount, cfg.SlotSize, r.Layout().TotalSize)
	return r.Close()
}

func remove(args []string) error {
	fs := newFlags("rm")
	name := ringName(fs)
	n, err := name(parseFlags(fs, args, 1))
	if err != nil {
		return err
	}
	return ringError(n, ring.Remove(n))
}
