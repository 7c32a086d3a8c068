package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDropOldestKeepsNewestAndCounts(t *testing.T) {
	var dropped []int
	q := New[int](3, DropOldest, func(v int) { dropped = append(dropped, v) })
	for i := 0; i < 10; i++ {
		if err := q.Push(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	var got []int
	for v := range q.C() {
		got = append(got, v)
	}
	if len(got) != 3 || got[0] != 7 || got[2] != 9 || len(dropped) != 7 || dropped[0] != 0 {
		t.Errorf("kept %v dropped %v", got, dropped)
	}
}

func TestBlockWaitsAndHonoursContext(t *testing.T) {
	q := New[int](1, Block, nil)
	ctx := context.Background()
	if err := q.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.Push(tctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("full queue: %v", err)
	}
	done := make(chan error)
	go func() { done <- q.Push(ctx, 3) }()
	if v, _ := q.Pop(ctx); v != 1 {
		t.Errorf("pop %d", v)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
	if v, _ := q.Pop(ctx); v != 3 {
		t.Errorf("pop %d", v)
	}
	q.Close()
	q.Close()
	if err := q.Push(ctx, 4); !errors.Is(err, ErrClosed) {
		t.Errorf("push after close: %v", err)
	}
	if _, ok := q.Pop(ctx); ok {
		t.Error("pop from closed empty queue")
	}
}
