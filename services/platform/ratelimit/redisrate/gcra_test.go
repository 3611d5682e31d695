package redisrate

import (
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/herald-feed/herald/services/platform/ratelimit"
)

// TestGCRA: redis_rate refills one token every Period/Rate; that must be
// 1/Rate seconds for every rate, integral or not.
func TestGCRA(t *testing.T) {
	tests := []struct {
		in   ratelimit.Limit
		want redis_rate.Limit
	}{
		{ratelimit.Limit{Rate: 20, Burst: 5}, redis_rate.Limit{Rate: 20, Burst: 5, Period: time.Second}},
		{ratelimit.Limit{Rate: 1, Burst: 1}, redis_rate.Limit{Rate: 1, Burst: 1, Period: time.Second}},
		{ratelimit.Limit{Rate: 0.5, Burst: 2}, redis_rate.Limit{Rate: 1, Burst: 2, Period: 2 * time.Second}},
		{ratelimit.Limit{Rate: 2.5, Burst: 3}, redis_rate.Limit{Rate: 1, Burst: 3, Period: 400 * time.Millisecond}},
		{ratelimit.Limit{Rate: 1.0 / 60, Burst: 10}, redis_rate.Limit{Rate: 1, Burst: 10, Period: time.Minute}},
		{ratelimit.Limit{Rate: 1.0 / 3, Burst: 1}, redis_rate.Limit{Rate: 1, Burst: 1, Period: 3 * time.Second}},
		{ratelimit.Limit{Rate: 3e8 + 0.5, Burst: 1}, redis_rate.Limit{Rate: 1, Burst: 1, Period: 3 * time.Nanosecond}},
	}
	for _, tt := range tests {
		got, err := gcra(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("gcra(%+v) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
