package placement

import (
	"encoding/json"
	"slices"
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
	// Measured is what each camera it serves has cost it lately, in the
	// unit of Capacity (cores), where it has measured it.
	Measured map[int]float64 `json:"measured,omitempty"`
	Console  string          `json:"console,omitempty"`
}

// balancer is a kafka-go GroupBalancer that places a site's cameras (one
// partition each) on its boxes by cost: sticky (a box keeps the cameras it
// serves while it lives), a dead box's cameras to the least loaded boxes,
// and a camera moved off a busy box only when that makes the busiest box
// clearly less loaded, so that a box coming back takes work again without
// every camera moving.
type balancer struct {
	// configured is each camera's cost as configured; 0: not given.
	configured func(partition int) float64
	// measure, if set, is what the cameras this box serves cost it now.
	measure func() map[int]float64

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
	m := b.self
	if b.measure != nil {
		m.Measured = b.measure()
	}
	return json.Marshal(m)
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
	metas := make([]member, len(boxes))
	for i, bx := range boxes {
		metas[i] = bx.meta
	}
	costs := b.costs(metas, exists)
	cost := func(p int) float64 { return costs[p] }
	taken := map[int]bool{}
	ratio := func(bx *box) float64 { return bx.load / bx.meta.Capacity }
	give := func(bx *box, p int) {
		bx.has[p], taken[p] = true, true
		bx.load += cost(p)
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
		if ci, cj := cost(free[i]), cost(free[j]); ci != cj {
			return ci > cj
		}
		return free[i] < free[j]
	})
	for _, p := range free {
		best := boxes[0]
		for _, bx := range boxes[1:] {
			if (bx.load+cost(p))/bx.meta.Capacity < (best.load+cost(p))/best.meta.Capacity {
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
			c := cost(p)
			after := max((hi.load-c)/hi.meta.Capacity, (lo.load+c)/lo.meta.Capacity)
			if after < ratio(hi)*(1-improvement) && better(p, after) {
				move, best = p, after
			}
		}
		if move < 0 {
			break
		}
		delete(hi.has, move)
		hi.load -= cost(move)
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

// costs is each camera's cost for one placement: as the box serving it
// measured it, else as configured, else the mean of the costs known (a
// camera like the others), else 1.
func (b *balancer) costs(metas []member, exists map[int]bool) map[int]float64 {
	out := map[int]float64{}
	for _, m := range metas {
		for p, c := range m.Measured {
			if exists[p] && c > 0 && out[p] == 0 && slices.Contains(m.Owned, p) {
				out[p] = c
			}
		}
	}
	for p := range exists {
		if out[p] == 0 && b.configured != nil {
			if c := b.configured(p); c > 0 {
				out[p] = c
			}
		}
	}
	mean := 1.0
	if len(out) > 0 {
		sum := 0.0
		for _, c := range out {
			sum += c
		}
		mean = sum / float64(len(out))
	}
	for p := range exists {
		if out[p] == 0 {
			out[p] = mean
		}
	}
	return out
}
