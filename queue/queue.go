// Package queue provides the bounded channel that sits between stages.
//
// Every hand-off of frames and count events between a camera's stages goes
// through a Queue (pipeline.Camera lists them with their sizes), so every
// such buffer has a size and a stated overflow policy:
//   - DropOldest is for video frames: a slow consumer loses the oldest
//     frame, the drop is counted with a reason, and the producer never blocks
//     (a camera's packet reader must not stall).
//   - Block is for things that must not be lost (count events, and frames of
//     a file job, where every frame must come out): the producer waits
//     until there is room or its context ends.
package queue

import (
	"context"
	"sync"
)

// Policy says what Push does when the queue is full.
type Policy int

const (
	// Block makes Push wait for room.
	Block Policy = iota
	// DropOldest makes Push discard the oldest queued item.
	DropOldest
)

// Queue is a bounded FIFO with one overflow policy. Close it from the
// producer side once no more items will be pushed; the consumer then drains
// what is left and sees ok == false.
type Queue[T any] struct {
	ch     chan T
	policy Policy
	onDrop func(T)
	mu     sync.Mutex // serialises drop-oldest against Close
	closed bool
}

// New makes a queue holding at most size items. onDrop, if not nil, is called
// with each item discarded by DropOldest (to count it and release it).
func New[T any](size int, policy Policy, onDrop func(T)) *Queue[T] {
	if size < 1 {
		size = 1
	}
	return &Queue[T]{ch: make(chan T, size), policy: policy, onDrop: onDrop}
}

// Push adds v. With Block it waits for room or for ctx; with DropOldest it
// never waits. It returns ctx.Err() when it gave up, and ErrClosed after Close.
func (q *Queue[T]) Push(ctx context.Context, v T) error {
	if q.policy == Block {
		q.mu.Lock()
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return ErrClosed
		}
		select {
		case q.ch <- v:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	for {
		select {
		case q.ch <- v:
			return nil
		default:
		}
		select {
		case old := <-q.ch:
			if q.onDrop != nil {
				q.onDrop(old)
			}
		default:
		}
	}
}

// C is the receive side, for use in select.
func (q *Queue[T]) C() <-chan T { return q.ch }

// Pop waits for the next item. ok is false when the queue is closed and
// empty, or ctx ended.
func (q *Queue[T]) Pop(ctx context.Context) (v T, ok bool) {
	select {
	case v, ok = <-q.ch:
		return v, ok
	case <-ctx.Done():
		return v, false
	}
}

// Len is the number of queued items.
func (q *Queue[T]) Len() int { return len(q.ch) }

// Cap is the queue's size.
func (q *Queue[T]) Cap() int { return cap(q.ch) }

// Close marks the end of input. It must be called by the producer only, once
// no Push is in flight; calling it twice is safe.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}

type errClosed struct{}

func (errClosed) Error() string { return "queue: closed" }

// ErrClosed is returned by Push after Close.
var ErrClosed error = errClosed{}
