package main

import "testing"

func TestLimitMallocArenas(t *testing.T) {
	for _, env := range []string{"", "4"} {
		if err := limitMallocArenas(env); err != nil {
			t.Errorf("MALLOC_ARENA_MAX=%q: %v", env, err)
		}
	}
}
