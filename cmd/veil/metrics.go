package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/record"
)

// stageMetrics are the metrics of every stage, registered once per process
// on the registry that main picks, and handed to the stages.
type stageMetrics struct {
	reg     *prometheus.Registry
	blur    *blur.Metrics
	pipe    *pipeline.Metrics
	counter *counter.Metrics
	ingest  *ingest.Metrics
	record  *record.Metrics
}

// newStageMetrics makes a registry with the Go and process collectors and
// every stage's metrics on it.
func newStageMetrics() (*stageMetrics, error) {
	m := &stageMetrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if m.blur, err = blur.NewMetrics(m.reg); err != nil {
		return nil, err
	}
	if m.pipe, err = pipeline.NewMetrics(m.reg); err != nil {
		return nil, err
	}
	if m.counter, err = counter.NewMetrics(m.reg); err != nil {
		return nil, err
	}
	if m.ingest, err = ingest.NewMetrics(m.reg); err != nil {
		return nil, err
	}
	if m.record, err = record.NewMetrics(m.reg); err != nil {
		return nil, err
	}
	return m, nil
}
