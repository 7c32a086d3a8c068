package kafkaconf

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded starts an in-process Kafka-protocol broker (kfake) on loopback
// with the topic created, for veil demo: the publisher and the exporter
// talk to it over TCP exactly as to a real cluster. Close the cluster
// after use.
func Embedded(ctx context.Context, topic string) (*kfake.Cluster, Config, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		return nil, Config{}, fmt.Errorf("embedded kafka: %w", err)
	}
	kc := Config{Brokers: c.ListenAddrs(), Topic: topic, ClientID: "veil"}
	if err := kc.EnsureTopic(ctx, topic, 3, nil); err != nil {
		c.Close()
		return nil, kc, err
	}
	return c, kc, nil
}
