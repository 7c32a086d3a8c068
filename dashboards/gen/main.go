// Command gen renders veil's Grafana dashboards from code (the Grafana
// foundation SDK) into dashboards/grafana/*.json, which are committed and
// provisioned. `go run ./dashboards/gen` after a change; a test fails when
// the committed JSON drifts from this code.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/gauge"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// ds is the Prometheus data source provisioned with the dashboards.
var ds = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("veil-prometheus")}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend)
}

func series(title, unit string, qs ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Datasource(ds).Unit(unit).Height(8).Span(12)
	for _, q := range qs {
		p.WithTarget(q)
	}
	return p
}

func cameraVar() *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder("camera").Label("Camera").Datasource(ds).
		Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(veil_blur_frames_total, camera)")}).
		Multi(true).IncludeAll(true)
}

func siteVar() *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder("site").Label("Site").Datasource(ds).
		Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(veil_footfall_window_end_timestamp_seconds, site)")}).
		Multi(true).IncludeAll(true).AllValue(".*")
}

func footfallCameraVar() *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder("camera").Label("Camera").Datasource(ds).
		Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(veil_footfall_window_end_timestamp_seconds{site=~"$site"}, camera)`)}).
		Multi(true).IncludeAll(true)
}

// Footfall is the business view: who came in, when, and how full it is.
func Footfall() (dashboard.Dashboard, error) {
	return dashboard.NewDashboardBuilder("veil: footfall").
		Uid("veil-footfall").Tags([]string{"veil"}).Refresh("30s").Time("now-24h", "now").
		WithVariable(siteVar()).WithVariable(footfallCameraVar()).
		WithRow(dashboard.NewRowBuilder("Entries and exits")).
		WithPanel(series("Entries per minute", "short",
			query(`sum by (site, camera, line) (rate(veil_footfall_entries_total{site=~"$site", camera=~"$camera"}[$__rate_interval])) * 60`, "{{site}} {{camera}} {{line}}"))).
		WithPanel(series("Exits per minute", "short",
			query(`sum by (site, camera, line) (rate(veil_footfall_exits_total{site=~"$site", camera=~"$camera"}[$__rate_interval])) * 60`, "{{site}} {{camera}} {{line}}"))).
		WithPanel(stat.NewPanelBuilder().Title("Entries, last hour").Datasource(ds).Height(5).Span(6).
			WithTarget(query(`sum by (site, camera, line) (increase(veil_footfall_entries_total{site=~"$site", camera=~"$camera"}[1h]))`, "{{site}} {{camera}} {{line}}"))).
		WithPanel(stat.NewPanelBuilder().Title("Entries, last 24 hours").Datasource(ds).Height(5).Span(6).
			WithTarget(query(`sum by (site, camera, line) (increase(veil_footfall_entries_total{site=~"$site", camera=~"$camera"}[1d]))`, "{{site}} {{camera}} {{line}}"))).
		WithPanel(stat.NewPanelBuilder().Title("Exits, last 24 hours").Datasource(ds).Height(5).Span(6).
			WithTarget(query(`sum by (site, camera, line) (increase(veil_footfall_exits_total{site=~"$site", camera=~"$camera"}[1d]))`, "{{site}} {{camera}} {{line}}"))).
		WithPanel(heatmap.NewPanelBuilder().Title("Busiest hours (entries per hour)").Datasource(ds).Height(8).Span(24).
			WithTarget(query(`sum by (site, camera) (increase(veil_footfall_entries_total{site=~"$site", camera=~"$camera"}[1h]))`, "{{site}} {{camera}}").Interval("1h"))).
		WithRow(dashboard.NewRowBuilder("Occupancy")).
		WithPanel(series("Occupancy and capacity", "short",
			query(`veil_zone_occupancy{site=~"$site", camera=~"$camera"}`, "{{site}} {{camera}} {{zone}}"),
			query(`veil_zone_capacity{site=~"$site", camera=~"$camera"} > 0`, "{{site}} {{camera}} {{zone}} capacity"))).
		WithPanel(gauge.NewPanelBuilder().Title("Occupancy / capacity now").Datasource(ds).Unit("percentunit").Min(0).Max(1.2).Height(8).Span(12).
			WithTarget(query(`veil_zone_occupancy{site=~"$site", camera=~"$camera"} / on (site, camera, zone) (veil_zone_capacity > 0)`, "{{site}} {{camera}} {{zone}}"))).
		Build()
}

// Operations is the health and privacy view for whoever runs veil.
func Operations() (dashboard.Dashboard, error) {
	return dashboard.NewDashboardBuilder("veil: operations and privacy health").
		Uid("veil-operations").Tags([]string{"veil"}).Refresh("10s").Time("now-3h", "now").
		WithVariable(cameraVar()).
		WithRow(dashboard.NewRowBuilder("Cameras")).
		WithPanel(stat.NewPanelBuilder().Title("Cameras up").Datasource(ds).Height(5).Span(8).
			WithTarget(query(`veil_camera_up{camera=~"$camera"}`, "{{camera}}"))).
		WithPanel(series("Frames per second: decoded and delivered obscured", "fps",
			query(`sum by (camera) (rate(veil_ingest_frames_decoded_total{camera=~"$camera"}[$__rate_interval]))`, "{{camera}} decoded"),
			query(`sum by (camera) (rate(veil_pipeline_frames_delivered_total{camera=~"$camera"}[$__rate_interval]))`, "{{camera}} obscured"))).
		WithPanel(series("Frames dropped, by reason", "fps",
			query(`sum by (camera, stage, reason) (rate(veil_pipeline_frames_dropped_total{camera=~"$camera"}[$__rate_interval]))`, "{{camera}} {{stage}} {{reason}}"))).
		WithRow(dashboard.NewRowBuilder("Privacy")).
		WithPanel(series("Fail-closed frames (obscured whole), by reason", "fps",
			query(`sum by (camera, reason) (rate(veil_blur_fail_closed_frames_total{camera=~"$camera"}[$__rate_interval]))`, "{{camera}} {{reason}}"))).
		WithPanel(series("Obscuring latency (p50, p95)", "s",
			query(`histogram_quantile(0.5, sum by (camera, le) (rate(veil_blur_detect_duration_seconds_bucket{camera=~"$camera"}[$__rate_interval])))`, "{{camera}} p50"),
			query(`histogram_quantile(0.95, sum by (camera, le) (rate(veil_blur_detect_duration_seconds_bucket{camera=~"$camera"}[$__rate_interval])))`, "{{camera}} p95"))).
		WithPanel(stat.NewPanelBuilder().Title("Detector ready").Datasource(ds).Height(5).Span(8).
			WithTarget(query(`veil_blur_detector_ready{camera=~"$camera"}`, "{{camera}}"))).
		// Where the CPU goes: seconds spent per second in each stage, over
		// all cameras (the capacity benchmark's split), against the
		// process's CPU. With more work than cores these include waiting
		// for one. A file camera decodes in ffmpeg, outside veil.
		WithPanel(series("Time per stage, all cameras (cores)", "short",
			query(`sum(rate(veil_engine_inference_duration_seconds_sum[$__rate_interval]))`, "detector"),
			query(`sum(rate(veil_ingest_decode_duration_seconds_sum[$__rate_interval]))`, "decoding"),
			query(`sum(rate(veil_blur_obscure_duration_seconds_sum[$__rate_interval]))`, "obscuring"),
			query(`sum(rate(veil_people_process_duration_seconds_sum[$__rate_interval]))`, "counting"),
			query(`sum(rate(veil_live_encode_duration_seconds_sum[$__rate_interval]))`, "encoding"),
			query(`sum(rate(process_cpu_seconds_total{job="veil"}[$__rate_interval]))`, "veil's CPU"))).
		WithRow(dashboard.NewRowBuilder("Kafka and recordings")).
		WithPanel(series("Count events waiting in the spool", "short",
			query(`veil_publish_spool_events`, "events"))).
		WithPanel(series("Exporter lag", "short",
			query(`sum(veil_exporter_lag_messages)`, "messages"))).
		WithPanel(series("Recordings disk", "bytes",
			query(`veil_recording_bytes`, "recordings"),
			query(`veil_recording_disk_free_bytes`, "free"))).
		WithRow(dashboard.NewRowBuilder("Console and live view")).
		WithPanel(series("Live viewers", "short",
			query(`veil_live_viewers{camera=~"$camera"}`, "{{camera}}"))).
		WithPanel(series("Live view requests refused, by reason", "reqps",
			query(`sum by (reason) (rate(veil_live_refused_total[$__rate_interval]))`, "{{reason}}"))).
		WithPanel(series("Audit log: who looked, by kind (per hour)", "short",
			query(`sum by (kind) (increase(veil_audit_events_total[1h]))`, "{{kind}}"))).
		Build()
}

// Fleet is head office's view over every site: totals per site, and
// which sites and cameras have gone silent.
func Fleet() (dashboard.Dashboard, error) {
	const silent = `time() - max by (site, camera) (veil_footfall_window_end_timestamp_seconds{site=~"$site"})`
	return dashboard.NewDashboardBuilder("veil: fleet").
		Uid("veil-fleet").Tags([]string{"veil"}).Refresh("1m").Time("now-7d", "now").
		WithVariable(siteVar()).
		WithRow(dashboard.NewRowBuilder("Sites")).
		WithPanel(stat.NewPanelBuilder().Title("Sites reporting (a window in the last 5 minutes)").Datasource(ds).Height(5).Span(8).
			WithTarget(query(`count(count by (site) (`+silent+` < 300))`, "sites"))).
		WithPanel(stat.NewPanelBuilder().Title("Cameras silent over 5 minutes").Datasource(ds).Height(5).Span(8).
			WithTarget(query(`count(`+silent+` > 300) or vector(0)`, "cameras"))).
		WithPanel(stat.NewPanelBuilder().Title("Count events rejected, last 24 hours").Datasource(ds).Height(5).Span(8).
			WithTarget(query(`sum by (result) (increase(veil_exporter_events_total{result=~"unsigned|bad_signature|implausible|malformed"}[1d]))`, "{{result}}"))).
		WithPanel(series("Entries per hour, by site", "short",
			query(`sum by (site) (increase(veil_footfall_entries_total{site=~"$site"}[1h]))`, "{{site}}").Interval("1h"))).
		WithPanel(stat.NewPanelBuilder().Title("Entries, last 24 hours, by site").Datasource(ds).Height(8).Span(12).
			WithTarget(query(`sum by (site) (increase(veil_footfall_entries_total{site=~"$site"}[1d]))`, "{{site}}"))).
		WithPanel(series("People in the sites' zones now", "short",
			query(`sum by (site) (veil_zone_occupancy{site=~"$site"})`, "{{site}}"))).
		WithPanel(series("Silent cameras: seconds since their last window", "s",
			query(silent+` > 300`, "{{site}} {{camera}}"))).
		Build()
}

func main() {
	out := "dashboards/grafana"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	if err := Render(out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// Render writes every dashboard into dir.
func Render(dir string) error {
	for name, build := range map[string]func() (dashboard.Dashboard, error){"footfall.json": Footfall, "operations.json": Operations, "fleet.json": Fleet} {
		d, err := build()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
