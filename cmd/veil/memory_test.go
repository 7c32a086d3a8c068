package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneMemory: GOGC and MALLOC_ARENA_MAX in the environment win;
// otherwise veil sets its own.
func TestTuneMemory(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	env := map[string]string{"GOGC": "200", "MALLOC_ARENA_MAX": "4"}
	if err := tuneMemory(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=200 in the environment: veil set %d", got)
	}
	if err := tuneMemory(func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
}
