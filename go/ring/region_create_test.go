//go:build linux

package ring

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A named ring appears under its name only once complete (issue #17): a
// group ring is never seen at mode 0600 (a member opening it then would be
// refused "not open to uid") and never without its magic.
func TestNamedRingVisibleOnlyOnceComplete(t *testing.T) {
	dir := t.TempDir()
	const name = "visible-once-complete"
	path := filepath.Join(dir, name)
	o := Options{Dir: dir, Group: strconv.Itoa(os.Getegid())}
	// 1 MiB rings: sizing and reserving take long enough that a file
	// published before its header would be seen half-made.
	cfg := Config{SlotCount: 16, SlotSize: 64 << 10, MaxSubscribers: 2, MaxMembers: 4, SchemaCapacity: 64}
	var done atomic.Bool
	var seen, bad int
	var looks atomic.Int64
	var first string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			st, err := os.Stat(path)
			if err != nil {
				continue
			}
			seen++
			looks.Store(int64(seen))
			ok := st.Mode().Perm() == 0o660 && len(b) >= 8 && binary.LittleEndian.Uint64(b) == Magic
			if !ok {
				bad++
				if first == "" {
					first = st.Mode().Perm().String() + " size " + strconv.Itoa(len(b))
				}
			}
		}
	}()
	for range 200 {
		r, err := CreateWith(name, cfg, o)
		if err != nil {
			done.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		// On a loaded 2-core machine the watcher may not run at all while
		// the ring exists: keep it until the watcher has looked at it once
		// (bounded), so every round is observed at least when complete and
		// the racing looks during the next create are the real test.
		before := looks.Load()
		for deadline := time.Now().Add(200 * time.Millisecond); looks.Load() == before && time.Now().Before(deadline); {
			runtime.Gosched()
		}
		r.Close()
		if err := RemoveIn(dir, name); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	if bad > 0 {
		t.Fatalf("%d of %d looks saw a half-made ring (first: %s)", bad, seen, first)
	}
	if seen == 0 {
		t.Fatal("the watcher never saw the ring: the test proves nothing")
	}
}

// A create that loses to an existing name leaves the winner alone and no
// temporary file behind.
func TestNamedCreateExistingLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	r, err := CreateWith("taken", small, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := CreateWith("taken", small, o); err == nil {
		t.Fatal("second create of the same name succeeded")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "taken" {
		t.Fatalf("directory holds %v, want only taken", ents)
	}
}

// Contains runs lock-free next to the first consumer's attach, which makes
// the read-only mapping (-race checks the publication).
func TestContainsRacesReadOnlyMapping(t *testing.T) {
	r, err := CreateAnonymous("contains", small)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 1000 {
			if !r.Contains(r.mem[:8]) {
				t.Error("Contains lost the read-write mapping")
				return
			}
			r.Contains([]byte{1})
		}
	}()
	if _, err := r.reg.mapReadOnly(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	ro := r.reg.readOnly()
	if ro == nil || !r.Contains(ro[64:128]) {
		t.Fatal("Contains does not see the read-only mapping")
	}
}
