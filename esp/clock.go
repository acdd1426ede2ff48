package esp

import (
	"sync"
	"sync/atomic"
	"time"
)

// Clock is a coarse clock: the packet path reads it with one atomic load
// instead of calling time.Now. Something has to advance it: Run, or Set in
// tests.
type Clock struct {
	ns atomic.Int64 // Unix nanoseconds
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

func (c *Clock) nanos() int64 { return c.ns.Load() }

// Run sets the clock from time.Now every interval until stop is closed.
func (c *Clock) Run(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.Set(time.Now())
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

var (
	systemClock     = NewClock(time.Now())
	systemClockOnce sync.Once
)

// SystemClock returns the process's coarse clock, which a goroutine started
// on first use advances every 100 ms. SAs use it when SAConfig.Clock is nil.
func SystemClock() *Clock {
	systemClockOnce.Do(func() { go systemClock.Run(100*time.Millisecond, nil) })
	return systemClock
}
