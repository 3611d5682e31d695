package compare

import (
	"time"

	"github.com/herald-feed/herald/loadtest/internal/stats"
)

func newRecorder() *stats.Recorder { return stats.NewRecorder(time.Now()) }
