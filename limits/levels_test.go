package limits

import (
	"context"
	"testing"
	"time"
)

// Levels reads what reservations put on the counters, drained at the
// time asked, and changes nothing.
func TestLevels(t *testing.T) {
	eachStore(t, func(t *testing.T, st Store) {
		now := time.Now().Truncate(time.Millisecond)
		day := Counter{Key: t.Name() + "|day", Limit: 100, Expires: now.Add(time.Hour)}
		rpm := Counter{Key: t.Name() + "|rpm", Limit: 60, Rate: 1}
		untouched := Counter{Key: t.Name() + "|none", Limit: 5}
		if v, err := st.Reserve(context.Background(), []Charge{{Counter: day, Amount: 3}, {Counter: rpm, Amount: 10}}, now); err != nil || !v.OK {
			t.Fatalf("reserve: %+v %v", v, err)
		}
		r := st.(Reader)
		for range 2 { // reading twice reads the same
			got, err := r.Levels(context.Background(), []Counter{day, rpm, untouched}, now.Add(4*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != 3 || got[1] != 6 || got[2] != 0 {
				t.Errorf("levels %v, want [3 6 0] (rpm drained 4 of 10)", got)
			}
		}
		got, _ := r.Levels(context.Background(), []Counter{day}, now.Add(2*time.Hour))
		if got[0] != 0 {
			t.Errorf("a day counter past its window reads %v", got[0])
		}
	})
}
