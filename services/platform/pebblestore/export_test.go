package pebblestore

import "time"

// SetClock replaces the clock that idempotency TTLs are measured with.
func SetClock(s *Store, now func() time.Time) { s.now = now }
