package main

// #include <malloc.h>
import "C"

import (
	"errors"
	"runtime/debug"
)

// mallocArenas is how many arenas glibc's malloc may keep. Its default
// (eight per core) lets every thread that calls into libav, x264 or
// OpenVINO (cgo runs them on whichever OS thread the goroutine holds)
// grow an arena of its own, each keeping what was freed in it. Measured
// with `veil run` on 8 cameras of the capacity benchmark: RSS 1098 and
// 1065 MiB with 2 arenas against 1215 and 1220 MiB with the default, 1140
// with 4 and 1088 with 1, frames answered the same (32.8 and 30.2% against
// 34.6 and 31.6%); on 4 cameras 672 and 677 MiB against 842 and 886,
// 99.7% and 98.4% answered against 98.4% and 98.9%. An x264 encoder held
// 42 MiB in veil's process and 23 MiB in ffmpeg's: most of the gap was
// this.
const mallocArenas = 2

// limitMallocArenas caps glibc malloc's arenas. MALLOC_ARENA_MAX in the
// environment, when set, is glibc's own and is left to win.
func limitMallocArenas(env string) error {
	if env != "" {
		return nil
	}
	if C.mallopt(C.M_ARENA_MAX, mallocArenas) != 1 {
		return errors.New("mallopt(M_ARENA_MAX) refused")
	}
	return nil
}

// gcPercent is the Go collector's GOGC. Frames' buffers go round (decoder,
// blur, outputs, back to the decoder: frame.Recycle), so veil allocates
// little once running (8 cameras: 1.8 GB in 45 s against 6.3 GB before,
// 19 collections against 56), and a collection is cheap; the default of
// 100 then mostly kept freed memory. 8 cameras of the capacity benchmark:
// RSS 1065 and 1119 MiB at 25, 1172 and 1145 at 50, 1215-1257 at 100,
// 33.9 and 32.6% of frames answered at 25 against 26.4-35.9% at 100.
const gcPercent = 25

// lowerGCPercent sets gcPercent, unless GOGC in the environment says
// otherwise.
func lowerGCPercent(env string) {
	if env == "" {
		debug.SetGCPercent(gcPercent)
	}
}
