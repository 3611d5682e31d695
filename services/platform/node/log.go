package node

import "go.uber.org/zap"

// zapNop silences the etcd client's own zap logger; Herald logs what
// matters through slog.
func zapNop() *zap.Logger { return zap.NewNop() }
