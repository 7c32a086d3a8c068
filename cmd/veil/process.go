package main

// #include <malloc.h>
import "C"

import (
	"errors"
	"fmt"
	"runtime/debug"
	"syscall"
)

// noCoreDumps keeps raw frames out of core dumps (RLIMIT_CORE 0), and,
// by marking the process not dumpable, other users' debuggers out.
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

// gcPercent is GOGC unless set: picture buffers go round (frame.Recycle),
// so 100 mostly kept freed memory (docs/benchmarks).
const gcPercent = 25

// tuneMemory also caps glibc malloc at 2 arenas unless MALLOC_ARENA_MAX
// is set: by default every thread calling into x264, libav or OpenVINO
// keeps one, and the process held more memory (docs/benchmarks).
func tuneMemory(getenv func(string) string) error {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("MALLOC_ARENA_MAX") == "" && C.mallopt(C.M_ARENA_MAX, 2) != 1 {
		return errors.New("mallopt(M_ARENA_MAX) refused")
	}
	return nil
}
