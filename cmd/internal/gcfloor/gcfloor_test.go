package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		live, floor uint64
		want        int
	}{
		{live: 0, floor: 32 * mib, want: 800},         // nothing live yet: as high as the runtime minimum allows
		{live: 1 * mib, floor: 32 * mib, want: 800},   // 3100 would make the runtime's minimum goal 124 MiB
		{live: 4 * mib, floor: 32 * mib, want: 700},   // 4 × 8 = 32
		{live: 8 * mib, floor: 32 * mib, want: 300},   // 8 × 4 = 32
		{live: 15 * mib, floor: 32 * mib, want: 113},  // 15 × 2.13 ≈ 32
		{live: 16 * mib, floor: 32 * mib, want: 100},  // twice the live heap reaches the floor
		{live: 300 * mib, floor: 32 * mib, want: 100}, // thousands of streams: the default
		{live: 1 * mib, floor: 2 * mib, want: 100},    // a floor under the runtime minimum changes nothing
		{live: 10 * mib, floor: 1 << 30, want: 10140}, // 10 MiB × 102.4 ≈ 1 GiB
	}
	for _, tt := range tests {
		if got := Percent(tt.live, tt.floor); got != tt.want {
			t.Errorf("Percent(%d MiB, %d MiB) = %d, want %d", tt.live/mib, tt.floor/mib, got, tt.want)
		}
	}
}

// gogc reads the GC percent in force.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestSet checks that Set retunes GOGC after collections, and that GOGC in the environment turns it off. The test
// changes the process's GC setting, so it does not run in parallel and restores the setting at the end.
func TestSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	if Set(32<<20, func(k string) string { return map[string]string{"GOGC": "100"}[k] }) {
		t.Error("Set with GOGC in the environment took effect")
	}
	if got := gogc(); got != 100 {
		t.Errorf("after a refused Set, GOGC = %d, want 100", got)
	}

	const floor = 64 << 20
	if !Set(floor, func(string) string { return "" }) {
		t.Fatal("Set did not take effect")
	}
	want := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		return uint64(Percent(s[0].Value.Uint64(), floor))
	}
	if got, w := gogc(), want(); got != w || got <= 100 {
		t.Errorf("right after Set, GOGC = %d, want %d (above 100)", got, w)
	}
	// Keep 40 MiB alive: the next goal is twice the live heap, so GOGC goes back to 100 once a collection has
	// seen it and the finalizer has run.
	live := make([][]byte, 40)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	deadline := time.Now().Add(10 * time.Second)
	for gogc() != 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d after collections with 40 MiB live and a 64 MiB floor, want 100", gogc())
		}
		runtime.GC()
		runtime.Gosched()
	}
	runtime.KeepAlive(live)
	live = nil
	// With the heap small again, the floor comes back.
	for gogc() == 100 {
		if time.Now().After(deadline) {
			t.Fatal("GOGC stayed at 100 after the live heap shrank")
		}
		runtime.GC()
		runtime.Gosched()
	}
}
