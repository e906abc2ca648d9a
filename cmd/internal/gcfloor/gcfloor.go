// Package gcfloor lets a service's heap grow to a floor before the garbage collector runs, and behaves as the
// default GOGC=100 above it.
//
// With the default settings the collector runs each time the heap doubles its live size. A proxy or an MCP server
// keeps little alive between requests (a few MiB) but makes a lot of short-lived garbage per request (the go-sdk's
// JSON decoder alone takes a 32 KiB buffer per message), so with a small live heap it collects hundreds of times a
// second and spends more CPU on that than on the requests. A floor of a few tens of MiB removes most of those cycles
// for a bounded amount of memory, and a large live heap (thousands of open streams) is collected exactly as by default,
// so memory per stream does not change.
//
// Go has no setting for a minimum heap goal, so [Set] retunes GOGC after every collection from the live heap that
// collection found.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// minHeap is the Go runtime's minimum heap goal at GOGC=100; the runtime scales it with GOGC.
const minHeap = 4 << 20

// Percent returns the GOGC value under which the collector's next heap goal, live × (1 + GOGC/100), is floor when the
// live heap is less than half of it, and twice the live heap as at GOGC=100 otherwise. It is never below 100, and never
// so high that the runtime's own minimum goal (4 MiB × GOGC/100) exceeds floor.
func Percent(live, floor uint64) int {
	ceiling := max(100, int(floor*100/minHeap))
	if live == 0 {
		return ceiling
	}
	if 2*live >= floor {
		return 100
	}
	return min(ceiling, int((floor-live)*100/live))
}

// Set keeps the heap goal at floor bytes or more, from the next collection on, for the life of the process. It does
// nothing when the environment (read through getenv) sets GOGC, so that the operator's setting wins; GOMEMLIMIT applies
// either way. It reports whether it took effect. Call it once, from main.
func Set(floor uint64, getenv func(string) string) bool {
	if getenv("GOGC") != "" || floor == 0 {
		return false
	}
	t := &tuner{floor: floor, samples: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.tune()
	return true
}

// tuner re-arms a finalizer on itself, so that tune runs once after every collection.
type tuner struct {
	floor   uint64
	percent int
	samples []metrics.Sample
}

func (t *tuner) tune() {
	metrics.Read(t.samples)
	var live uint64
	if t.samples[0].Value.Kind() == metrics.KindUint64 {
		live = t.samples[0].Value.Uint64()
	}
	if p := Percent(live, t.floor); p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	runtime.SetFinalizer(t, (*tuner).tune)
}
