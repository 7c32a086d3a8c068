package placement

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/segmentio/kafka-go"
)

func members(t *testing.T, ms ...member) []kafka.GroupMember {
	var out []kafka.GroupMember
	for _, m := range ms {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kafka.GroupMember{ID: m.Box, UserData: b})
	}
	return out
}

func parts(n int) []kafka.Partition {
	var out []kafka.Partition
	for i := range n {
		out = append(out, kafka.Partition{Topic: "t", ID: i})
	}
	return out
}

// load is each box's summed cost, and every camera placed exactly once.
func load(t *testing.T, a kafka.GroupMemberAssignments, n int, cost func(int) float64) map[string]float64 {
	t.Helper()
	seen := map[int]string{}
	out := map[string]float64{}
	for box, topics := range a {
		for _, p := range topics["t"] {
			if prev, ok := seen[p]; ok {
				t.Fatalf("camera %d on %s and %s", p, prev, box)
			}
			seen[p] = box
			out[box] += cost(p)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d cameras placed: %v", len(seen), n, a)
	}
	return out
}

func TestBalancer(t *testing.T) {
	unit := func(int) float64 { return 1 }
	heavy := func(p int) float64 { // camera 0 is a 4K camera
		if p == 0 {
			return 4
		}
		return 1
	}
	// as measured by the boxes below: camera 0 costs 3 cores, the rest 1
	measured := func(p int) float64 {
		if p == 0 {
			return 3
		}
		return 1
	}
	cases := []struct {
		name  string
		cost  func(int) float64 // what each camera really costs
		conf  func(int) float64 // what the config says (nil: as cost)
		n     int
		boxes []member
		want  map[string]float64
		moved int // at most this many cameras leave the box that had them
	}{
		{"first start: spread evenly", unit, nil, 6, []member{{Box: "a"}, {Box: "b"}, {Box: "c"}}, map[string]float64{"a": 2, "b": 2, "c": 2}, 0},
		{"by capacity", unit, nil, 6, []member{{Box: "a", Capacity: 2}, {Box: "b", Capacity: 1}}, map[string]float64{"a": 4, "b": 2}, 0},
		{"by cost", heavy, nil, 6, []member{{Box: "a"}, {Box: "b"}}, map[string]float64{"a": 4, "b": 5}, 0},
		{"a box died: its cameras to the others, the rest stay", unit, nil, 6,
			[]member{{Box: "a", Owned: []int{0, 1}}, {Box: "c", Owned: []int{4, 5}}}, map[string]float64{"a": 3, "c": 3}, 0},
		{"a box returned: takes work back, a camera moves only where it helps", unit, nil, 6,
			[]member{{Box: "a", Owned: []int{0, 1, 2}}, {Box: "b"}, {Box: "c", Owned: []int{3, 4, 5}}}, map[string]float64{"a": 2, "b": 2, "c": 2}, 2},
		{"balanced enough: nothing moves", unit, nil, 5,
			[]member{{Box: "a", Owned: []int{0, 1, 2}}, {Box: "b", Owned: []int{3, 4}}}, map[string]float64{"a": 3, "b": 2}, 0},
		{"a camera claimed twice goes once", unit, nil, 2,
			[]member{{Box: "a", Owned: []int{0, 1}}, {Box: "b", Owned: []int{1}}}, map[string]float64{"a": 1, "b": 1}, 1},
		{"measured costs over configured ones: a camera moves off the box a heavy camera loads", measured, unit, 4,
			[]member{{Box: "a", Owned: []int{0, 1}, Measured: map[int]float64{0: 3, 1: 1}}, {Box: "b", Owned: []int{2, 3}, Measured: map[int]float64{2: 1, 3: 1}}},
			map[string]float64{"a": 3, "b": 3}, 1},
		{"a camera no one measured costs as much as the others", func(int) float64 { return 2 }, func(int) float64 { return 0 }, 4,
			[]member{{Box: "a", Owned: []int{0, 1, 2}, Measured: map[int]float64{0: 2, 1: 2, 2: 2}}, {Box: "b"}},
			map[string]float64{"a": 4, "b": 4}, 1},
		{"a measure for a camera the box does not serve is not believed", unit, unit, 2,
			[]member{{Box: "a", Owned: []int{0}}, {Box: "b", Owned: []int{1}, Measured: map[int]float64{0: 100}}},
			map[string]float64{"a": 1, "b": 1}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf := tc.conf
			if conf == nil {
				conf = tc.cost
			}
			b := &balancer{configured: conf}
			a := b.AssignGroups(members(t, tc.boxes...), parts(tc.n))
			if got := load(t, a, tc.n, tc.cost); fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(tc.want)) {
				t.Errorf("load %v, want %v (%v)", got, tc.want, a)
			}
			moved := 0
			for _, m := range tc.boxes {
				for _, p := range m.Owned {
					found := false
					for _, q := range a[m.Box]["t"] {
						found = found || q == p
					}
					if !found {
						moved++
					}
				}
			}
			if moved > tc.moved {
				t.Errorf("%d cameras moved off their box, want at most %d (%v)", moved, tc.moved, a)
			}
		})
	}
}

// sorted is the loads in order, whichever box has which.
func sorted(m map[string]float64) []float64 {
	var out []float64
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func FuzzBalancer(f *testing.F) {
	f.Add([]byte(`{"box":"a","capacity":2,"owned":[0,1,7]}`), []byte(`{"box":"b","owned":[1]}`), uint8(6))
	f.Fuzz(func(t *testing.T, m1, m2 []byte, n uint8) {
		if n == 0 {
			return
		}
		b := &balancer{configured: func(int) float64 { return 1 }}
		a := b.AssignGroups([]kafka.GroupMember{{ID: "a", UserData: m1}, {ID: "b", UserData: m2}}, parts(int(n)))
		load(t, a, int(n), func(int) float64 { return 1 })
	})
}
