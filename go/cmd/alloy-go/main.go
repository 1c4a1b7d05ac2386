// Command alloy-go is the Go side's command-line tool: it creates, sends to
// and receives from Alloy shared-memory rings.
package main

import (
	"fmt"
	"os"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: alloy-go <command> [flags]\n\ncommands:\n  version   print the tool and layout version")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "version":
		fmt.Println("alloy-go 0.1.0 (layout version 1)")
	default:
		fmt.Fprintf(os.Stderr, "alloy-go: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
}
