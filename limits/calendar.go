package limits

import "time"

// day returns the calendar day of now in loc: a name for it and when it
// ends (the next midnight in loc).
func day(now time.Time, loc *time.Location) (string, time.Time) {
	t := now.In(loc)
	start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	return start.Format("2006-01-02"), start.AddDate(0, 0, 1)
}

// month returns the calendar month of now in loc: a name for it and when
// it ends.
func month(now time.Time, loc *time.Location) (string, time.Time) {
	t := now.In(loc)
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	return start.Format("2006-01"), start.AddDate(0, 1, 0)
}
