package main

import (
	"runtime/debug"
	"testing"
)

func TestLimitMallocArenas(t *testing.T) {
	for _, env := range []string{"", "4"} {
		if err := limitMallocArenas(env); err != nil {
			t.Errorf("MALLOC_ARENA_MAX=%q: %v", env, err)
		}
	}
}

func TestLowerGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	lowerGCPercent("200")
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=200 in the environment: veil set %d", got)
	}
	lowerGCPercent("")
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
}
