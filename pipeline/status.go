package pipeline

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// cameraStatus is one row of the status page, read from the process's own
// metrics registry (so the page can never disagree with /metrics).
type cameraStatus struct {
	Camera     string             `json:"camera"`
	Up         bool               `json:"up"`
	Codec      string             `json:"codec,omitempty"` // what the camera sends now (empty while down)
	Width      int                `json:"width,omitempty"`
	Height     int                `json:"height,omitempty"`
	FPS        int                `json:"fps,omitempty"`
	Obscured   float64            `json:"frames_obscured"`
	FailClosed float64            `json:"frames_fail_closed"`
	Dropped    float64            `json:"frames_dropped"`
	Faces      float64            `json:"faces_obscured"`
	In         map[string]float64 `json:"in"`
	Out        map[string]float64 `json:"out"`
	Occupancy  map[string]float64 `json:"occupancy"`
	Capacity   map[string]float64 `json:"capacity"`
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	return m.GetCounter().GetValue() + m.GetGauge().GetValue()
}

// statusFrom summarises the registry per camera.
func statusFrom(g prometheus.Gatherer) ([]cameraStatus, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	cams := map[string]*cameraStatus{}
	get := func(c string) *cameraStatus {
		if cams[c] == nil {
			cams[c] = &cameraStatus{Camera: c, In: map[string]float64{}, Out: map[string]float64{},
				Occupancy: map[string]float64{}, Capacity: map[string]float64{}}
		}
		return cams[c]
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			cam := label(m, "camera")
			if cam == "" {
				continue
			}
			switch mf.GetName() {
			case "veil_camera_up":
				get(cam).Up = value(m) == 1
			case "veil_camera_stream_info":
				c := get(cam)
				c.Codec = label(m, "codec")
				c.Width, _ = strconv.Atoi(label(m, "width"))
				c.Height, _ = strconv.Atoi(label(m, "height"))
				c.FPS, _ = strconv.Atoi(label(m, "fps"))
			case "veil_blur_frames_total":
				switch label(m, "result") {
				case "obscured":
					get(cam).Obscured += value(m)
				case "fail_closed":
					get(cam).FailClosed += value(m)
				}
			case "veil_pipeline_frames_dropped_total":
				get(cam).Dropped += value(m)
			case "veil_blur_faces_detected_total":
				get(cam).Faces += value(m)
			case "veil_people_crossings_total":
				if label(m, "direction") == "in" {
					get(cam).In[label(m, "line")] = value(m)
				} else {
					get(cam).Out[label(m, "line")] = value(m)
				}
			case "veil_people_zone_occupancy":
				get(cam).Occupancy[label(m, "zone")] = value(m)
			case "veil_people_zone_capacity":
				get(cam).Capacity[label(m, "zone")] = value(m)
			}
		}
	}
	out := make([]cameraStatus, 0, len(cams))
	for _, c := range cams {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Camera < out[j].Camera })
	return out, nil
}

// statusHandler serves the page at / and its data at /api/status.
func statusHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/status", func(w http.ResponseWriter, _ *http.Request) {
		st, err := statusFrom(g)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(statusPage))
	})
	return mux
}

const statusPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>veil: cameras</title>
<style>
body { font: 15px system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } table { border-collapse: collapse; min-width: 60%; }
th, td { padding: .45em .9em; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; } .up { color: #17803d; font-weight: 600; } .down { color: #b3261e; font-weight: 600; }
.note { color: #666; font-size: .9em; margin-top: 1em; }
</style></head><body>
<h1>veil: cameras</h1>
<table><thead><tr><th>Camera</th><th>Status</th><th>Stream</th><th>Frames obscured</th><th>Fail-closed</th><th>Dropped</th><th>In</th><th>Out</th><th>Occupancy</th></tr></thead>
<tbody id="rows"><tr><td colspan="9">loading…</td></tr></tbody></table>
<p class="note">Only obscured video is kept; counts are anonymous. Metrics: <a href="/metrics">/metrics</a>.</p>
<script>
function fmt(m) { return Object.entries(m).map(([k, v]) => k + ': ' + v).join(', ') || '–'; }
async function refresh() {
  const st = await (await fetch('/api/status')).json();
  const rows = st.map(c => '<tr data-camera="' + c.camera + '"><td>' + c.camera + '</td>' +
    '<td class="' + (c.up ? 'up">up' : 'down">down') + '</td>' +
    '<td>' + (c.codec ? c.codec + ' ' + c.width + '×' + c.height + (c.fps ? ' @' + c.fps : '') : '–') + '</td>' +
    '<td>' + c.frames_obscured + '</td><td>' + c.frames_fail_closed + '</td><td>' + c.frames_dropped + '</td>' +
    '<td>' + fmt(c.in) + '</td><td>' + fmt(c.out) + '</td>' +
    '<td>' + Object.entries(c.occupancy).map(([z, n]) => z + ': ' + n + (c.capacity[z] ? ' / ' + c.capacity[z] : '')).join(', ') + '</td></tr>');
  document.getElementById('rows').innerHTML = rows.join('') || '<tr><td colspan="9">no cameras</td></tr>';
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
`
