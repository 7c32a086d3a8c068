package placement

import (
	"encoding/json"
	"sort"
	"sync"

	"github.com/segmentio/kafka-go"
)

// member is what a box tells the group about itself when it joins: the
// group's leader places the cameras from these.
type member struct {
	Box      string  `json:"box"`
	Capacity float64 `json:"capacity"`
	Owned    []int   `json:"owned"` // the cameras (partitions) it serves now
	Console  string  `json:"console,omitempty"`
}

// balancer is a kafka-go GroupBalancer that places a site's cameras (one
// partition each) on its boxes by cost: sticky (a box keeps the cameras it
// serves while it lives), a dead box's cameras to the least loaded boxes,
// and a camera moved off a busy box only when that makes the busiest box
// clearly less loaded, so that a box coming back takes work again without
// every camera moving.
type balancer struct {
	cost func(partition int) float64

	mu   sync.Mutex
	self member
}

var _ kafka.GroupBalancer = (*balancer)(nil)

// protocol names veil's placement in the group protocol.
const protocol = "veil-placement-v1"

func (b *balancer) ProtocolName() string { return protocol }

func (b *balancer) UserData() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return json.Marshal(b.self)
}

func (b *balancer) setOwned(owned []int) {
	b.mu.Lock()
	b.self.Owned = append([]int(nil), owned...)
	b.mu.Unlock()
}

// improvement is how much lighter (as a share of its load) the busiest box
// must get for a camera to move off it: moving a camera interrupts it for
// a few seconds.
const improvement = 0.1

func (b *balancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	if len(members) == 0 {
		return out
	}
	topic := partitions[0].Topic
	type box struct {
		id   string
		meta member
		load float64
		has  map[int]bool
	}
	boxes := make([]*box, len(members))
	for i, m := range members {
		bx := &box{id: m.ID, has: map[int]bool{}}
		if json.Unmarshal(m.UserData, &bx.meta) != nil || bx.meta.Capacity <= 0 {
			bx.meta.Capacity = 1
		}
		boxes[i] = bx
	}
	// The order of members is the coordinator's; sort for a stable result.
	sort.Slice(boxes, func(i, j int) bool { return boxes[i].id < boxes[j].id })
	exists := map[int]bool{}
	for _, p := range partitions {
		exists[p.ID] = true
	}
	taken := map[int]bool{}
	ratio := func(bx *box) float64 { return bx.load / bx.meta.Capacity }
	give := func(bx *box, p int) {
		bx.has[p], taken[p] = true, true
		bx.load += b.cost(p)
	}
	// Sticky: each box keeps what it serves (a camera claimed twice goes
	// to the first claimant).
	for _, bx := range boxes {
		for _, p := range bx.meta.Owned {
			if exists[p] && !taken[p] {
				give(bx, p)
			}
		}
	}
	// The rest (new cameras, a dead box's), the costliest first, each to
	// the box it loads least.
	var free []int
	for p := range exists {
		if !taken[p] {
			free = append(free, p)
		}
	}
	sort.Slice(free, func(i, j int) bool {
		if ci, cj := b.cost(free[i]), b.cost(free[j]); ci != cj {
			return ci > cj
		}
		return free[i] < free[j]
	})
	for _, p := range free {
		best := boxes[0]
		for _, bx := range boxes[1:] {
			if (bx.load+b.cost(p))/bx.meta.Capacity < (best.load+b.cost(p))/best.meta.Capacity {
				best = bx
			}
		}
		give(best, p)
	}
	// Then move cameras off the busiest box while that clearly helps.
	for range len(exists) {
		hi, lo := boxes[0], boxes[0]
		for _, bx := range boxes {
			if ratio(bx) > ratio(hi) {
				hi = bx
			}
			if ratio(bx) < ratio(lo) {
				lo = bx
			}
		}
		// Of the cameras that help as much, one the light box served
		// before (it has it warm), else the lowest.
		claimed := map[int]bool{}
		for _, p := range lo.meta.Owned {
			claimed[p] = true
		}
		move, best := -1, ratio(hi)
		better := func(p int, after float64) bool {
			switch {
			case move < 0 || after < best:
				return true
			case after > best || claimed[move] && !claimed[p]:
				return false
			}
			return claimed[p] && !claimed[move] || p < move
		}
		for p := range hi.has {
			c := b.cost(p)
			after := max((hi.load-c)/hi.meta.Capacity, (lo.load+c)/lo.meta.Capacity)
			if after < ratio(hi)*(1-improvement) && better(p, after) {
				move, best = p, after
			}
		}
		if move < 0 {
			break
		}
		delete(hi.has, move)
		hi.load -= b.cost(move)
		give(lo, move)
	}
	for _, bx := range boxes {
		ps := make([]int, 0, len(bx.has))
		for p := range bx.has {
			ps = append(ps, p)
		}
		sort.Ints(ps)
		out[bx.id] = map[string][]int{topic: ps}
	}
	return out
}
