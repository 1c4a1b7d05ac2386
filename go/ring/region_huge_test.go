//go:build linux

package ring

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// freeHugePages reads HugePages_Free from /proc/meminfo.
func freeHugePages(t *testing.T) int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "HugePages_Free:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// hugeCfg is a 4 MiB ring: two 2 MiB huge pages and a bit, so the file is
// rounded up.
var hugeCfg = Config{SlotCount: 16, SlotSize: 256 << 10, MaxSubscribers: 2, MaxMembers: 4, SchemaCapacity: 64}

// An anonymous huge-page ring: Require gives huge pages when free ones are
// reserved and a clear error naming nr_hugepages when not; Prefer always
// works; the ring works like any other.
func TestAnonymousHugePages(t *testing.T) {
	free := freeHugePages(t)
	r, err := CreateAnonymousWith("huge", hugeCfg, Options{HugePages: HugePagesRequire, Prefault: true})
	if free < 3 {
		if !errors.Is(err, ErrHugePages) || !strings.Contains(err.Error(), "/proc/sys/vm/nr_hugepages") {
			t.Fatalf("with %d free huge pages Require gave %v, want ErrHugePages naming nr_hugepages", free, err)
		}
		r, err = CreateAnonymousWith("huge", hugeCfg, Options{HugePages: HugePagesPrefer})
		if err != nil {
			t.Fatalf("Prefer did not fall back to normal pages: %v", err)
		}
		defer r.Close()
		t.Skipf("no huge pages reserved (%d free): Require refused clearly, Prefer fell back; the huge path is untested", free)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	page := hugetlbfsPage(r.Fd())
	if page == 0 {
		t.Fatal("Require gave a ring that is not on hugetlbfs")
	}
	size, err := fileSize(r.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if size%page != 0 || size < r.Layout().TotalSize {
		t.Fatalf("file %d bytes, total_size %d, huge page %d", size, r.Layout().TotalSize, page)
	}
	// A peer maps it through the fd, checks the seals, and receives.
	peer, err := OpenFd(r.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	hugeRoundTrip(t, r, peer)
}

// A named ring asked to Require huge pages outside hugetlbfs is refused
// with the fix in the message; inside a hugetlbfs mount it works.
func TestNamedHugePages(t *testing.T) {
	_, err := CreateWith("huge-named", hugeCfg, Options{Dir: t.TempDir(), HugePages: HugePagesRequire})
	if !errors.Is(err, ErrHugePages) || !strings.Contains(err.Error(), "hugetlbfs") {
		t.Fatalf("Require outside hugetlbfs gave %v", err)
	}
	dir := os.Getenv("ALLOY_TEST_HUGETLBFS")
	if dir == "" || freeHugePages(t) < 3 {
		t.Skip("set ALLOY_TEST_HUGETLBFS to a hugetlbfs mount with >= 3 free huge pages to test named huge rings")
	}
	name := "alloy-gotest-huge-" + strconv.Itoa(os.Getpid())
	o := Options{Dir: dir, HugePages: HugePagesRequire, Prefault: true}
	r, err := CreateWith(name, hugeCfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveIn(dir, name)
	defer r.Close()
	peer, err := OpenWith(name, o)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if hugetlbfsPage(peer.Fd()) == 0 {
		t.Fatal("the named ring is not on hugetlbfs")
	}
	hugeRoundTrip(t, r, peer)
}

// hugeRoundTrip sends one message on p's ring and receives it on c's.
func hugeRoundTrip(t *testing.T, p, c *Ring) {
	t.Helper()
	cons, err := c.Subscribe(ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	prod, err := p.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Send([]byte("huge"), 0); err != nil {
		t.Fatal(err)
	}
	m, err := cons.TryRecv()
	if err != nil || m == nil || string(m.Bytes()) != "huge" {
		t.Fatalf("received %v, %v", m, err)
	}
	m.Release()
}

// prefaultSink keeps the page-touching loads of TestPrefault alive.
var prefaultSink byte

// minorFaults is this process's minor page-fault count.
func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// Prefault populates the page tables at create, so touching every page
// afterwards takes (almost) no faults, where a normal ring takes one per
// page; opening a live ring with Prefault keeps its bytes.
func TestPrefault(t *testing.T) {
	const pages = 1024 // hugeCfg is a little over 4 MiB
	touch := func(r *Ring) int64 {
		before := minorFaults(t)
		for i := 0; i < len(r.mem); i += 4096 {
			prefaultSink += r.mem[i]
		}
		return minorFaults(t) - before
	}
	plain, err := CreateAnonymousWith("plain", hugeCfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	warm, err := CreateAnonymousWith("warm", hugeCfg, Options{Prefault: true})
	if err != nil {
		t.Fatal(err)
	}
	defer warm.Close()
	cold, hot := touch(plain), touch(warm)
	t.Logf("minor faults touching %d pages: %d without prefault, %d with", pages, cold, hot)
	if cold < pages/2 || hot > pages/8 {
		t.Fatalf("minor faults: %d without prefault, %d with; want >= %d and <= %d", cold, hot, pages/2, pages/8)
	}
}
