//go:build !linux

package ring

func hugetlbfsPage(int) uint64                                   { return 0 }
func dirHugePage(string) uint64                                  { return 0 }
func prefault([]byte, bool)                                      {}
func anonymousFd(string, uint64, HugePages) (int, uint64, error) { return -1, 0, osSupported() }
