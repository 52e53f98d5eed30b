package main

// Time flags: --since takes a Go duration or days and weeks ("7d", "2w",
// "1d12h"); --from and --to take RFC 3339, a date ("2015-05-18", midnight
// UTC) or a date and time without a zone ("2015-05-18T10:00", "2015-05-18
// 10:00:05", UTC).

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// sinceFlag is a --since value (a pflag.Value).
type sinceFlag struct{ d time.Duration }

func (f *sinceFlag) String() string {
	if f.d == 0 {
		return ""
	}
	return f.d.String()
}
func (f *sinceFlag) Type() string { return "duration" }
func (f *sinceFlag) Set(s string) error {
	d, err := parseSince(s)
	if err != nil {
		return err
	}
	f.d = d
	return nil
}

var dayUnits = regexp.MustCompile(`^(\d+)([dw])(.*)$`)

// parseSince parses a positive age: a Go duration, optionally led by a
// count of days (d) or weeks (w).
func parseSince(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	if m := dayUnits.FindStringSubmatch(s); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q: %v", s, err)
		}
		unit := 24 * time.Hour
		if m[2] == "w" {
			unit *= 7
		}
		total, rest = time.Duration(n)*unit, m[3]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("%q is not an age like 90s, 15m, 1h30m, 7d or 2w", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q: an age must be positive (--since 1h: the last hour)", s)
	}
	return total, nil
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"}

// parseTimeFlag parses a --from/--to value; times without a zone are UTC.
func parseTimeFlag(name, s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: use RFC 3339 (2015-05-18T10:00:00Z), a date (2015-05-18) or a UTC date and time (2015-05-18T10:00)", name, s)
}

// timeRange turns the time flags into [from, to): --since excludes
// --from/--to, and an empty range (from at or after to) is an error.
func timeRange(since time.Duration, from, to string, now time.Time) (time.Time, time.Time, error) {
	var f, t time.Time
	var err error
	if since > 0 {
		if from != "" || to != "" {
			return f, t, errors.New("use --since or --from/--to, not both")
		}
		return now.Add(-since), t, nil
	}
	if from != "" {
		if f, err = parseTimeFlag("from", from); err != nil {
			return f, t, err
		}
	}
	if to != "" {
		if t, err = parseTimeFlag("to", to); err != nil {
			return f, t, err
		}
	}
	if !f.IsZero() && !t.IsZero() && !f.Before(t) {
		return f, t, fmt.Errorf("--from %s is not before --to %s: the range is empty (swap them?)", f.Format(time.RFC3339), t.Format(time.RFC3339))
	}
	return f, t, nil
}
