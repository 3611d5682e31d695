package ratelimit_test

import (
	"testing"

	"github.com/herald-feed/herald/services/platform/ratelimit"
	"github.com/herald-feed/herald/services/platform/ratelimit/ratelimittest"
)

func TestMemoryContract(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T) ratelimit.Limiter { return ratelimit.NewMemory() })
}
