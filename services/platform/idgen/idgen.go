// Package idgen mints time-sortable 64-bit post IDs in the Snowflake layout:
//
//	0 | 41 bits: milliseconds since Epoch | 10 bits: worker | 12 bits: sequence
//
// IDs from one Generator strictly increase. IDs from generators with
// different worker IDs never collide, so each live post instance must hold
// its own worker ID (Herald leases them from etcd; see package discovery).
package idgen

import (
	"fmt"
	"sync"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
)

// Epoch is the zero time of the ID's timestamp field. 41 bits of
// milliseconds last about 69 years from it.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	workerBits   = 10
	sequenceBits = 12
	// MaxWorker is the largest worker ID.
	MaxWorker   = 1<<workerBits - 1
	maxSequence = 1<<sequenceBits - 1
	timeShift   = workerBits + sequenceBits
)

// Generator mints IDs for one worker. It is safe for concurrent use.
type Generator struct {
	worker uint64
	now    func() time.Time

	mu   sync.Mutex
	last int64 // milliseconds since Epoch of the last ID
	seq  uint64
}

// New returns a Generator for worker, which must be in [0, MaxWorker].
// now is the clock; nil means time.Now.
func New(worker int, now func() time.Time) (*Generator, error) {
	if worker < 0 || worker > MaxWorker {
		return nil, fmt.Errorf("idgen: worker %d out of range [0, %d]", worker, MaxWorker)
	}
	if now == nil {
		now = time.Now
	}
	return &Generator{worker: uint64(worker), now: now}, nil
}

// Next returns a new ID. If the clock steps back, Next keeps using the last
// millisecond it saw (borrowing sequence numbers) rather than going back in
// time; when a millisecond's 4096 sequence numbers run out, it waits for
// the clock to pass it.
func (g *Generator) Next() feed.PostID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.millis()
	if ms < g.last {
		ms = g.last
	}
	if ms == g.last {
		g.seq++
		if g.seq > maxSequence {
			for ms <= g.last {
				time.Sleep(100 * time.Microsecond)
				ms = g.millis()
			}
			g.seq = 0
		}
	} else {
		g.seq = 0
	}
	g.last = ms
	return feed.PostID(uint64(ms)<<timeShift | g.worker<<sequenceBits | g.seq)
}

func (g *Generator) millis() int64 { return g.now().Sub(Epoch).Milliseconds() }

// Time returns the millisecond at which id was minted.
func Time(id feed.PostID) time.Time {
	return Epoch.Add(time.Duration(uint64(id)>>timeShift) * time.Millisecond)
}

// Worker returns the worker field of id.
func Worker(id feed.PostID) int { return int(uint64(id) >> sequenceBits & MaxWorker) }

// MinID returns the smallest ID minted at or after t. IDs below it are older
// than t, so it serves as a cursor bound for time ranges.
func MinID(t time.Time) feed.PostID {
	ms := t.Sub(Epoch).Milliseconds()
	if ms < 0 {
		ms = 0
	}
	return feed.PostID(uint64(ms) << timeShift)
}
