package main

import (
	"fmt"
	"syscall"
)

// noCoreDumps keeps raw frames out of core dumps: a crash must not write
// un-obscured pictures to disk. It sets RLIMIT_CORE to 0 and marks the
// process not dumpable (which also keeps other users' debuggers out of
// its memory).
func noCoreDumps() error {
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("disabling core dumps: %w", err)
	}
	const prSetDumpable = 4
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); e != 0 {
		return fmt.Errorf("marking the process not dumpable: %w", e)
	}
	return nil
}
