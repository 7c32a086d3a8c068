package counter

import "math"

// hungarian solves the rectangular assignment problem: it returns, for each
// row, the column assigned to it, or -1. Infinite costs are never assigned.
// O(n^3) (Kuhn-Munkres with potentials), fine for the few people in view.
func hungarian(cost [][]float64) []int {
	rows := len(cost)
	out := make([]int, rows)
	for i := range out {
		out[i] = -1
	}
	if rows == 0 || len(cost[0]) == 0 {
		return out
	}
	cols := len(cost[0])
	n := max(rows, cols)
	// Square matrix; forbidden and padding entries get a large finite cost.
	const big = 1e9
	a := make([][]float64, n+1)
	for i := range a {
		a[i] = make([]float64, n+1)
	}
	for i := 1; i <= n; i++ {
		for j := 1; j <= n; j++ {
			c := big
			if i <= rows && j <= cols && !math.IsInf(cost[i-1][j-1], 1) {
				c = cost[i-1][j-1]
			}
			a[i][j] = c
		}
	}
	u := make([]float64, n+1)
	v := make([]float64, n+1)
	p := make([]int, n+1)
	way := make([]int, n+1)
	for i := 1; i <= n; i++ {
		p[0] = i
		j0 := 0
		minv := make([]float64, n+1)
		used := make([]bool, n+1)
		for j := range minv {
			minv[j] = math.Inf(1)
		}
		for {
			used[j0] = true
			i0, delta, j1 := p[j0], math.Inf(1), 0
			for j := 1; j <= n; j++ {
				if used[j] {
					continue
				}
				cur := a[i0][j] - u[i0] - v[j]
				if cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= n; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if p[j0] == 0 {
				break
			}
		}
		for j0 != 0 {
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
		}
	}
	for j := 1; j <= n; j++ {
		i := p[j]
		if i >= 1 && i <= rows && j <= cols && a[i][j] < big {
			out[i-1] = j - 1
		}
	}
	return out
}
