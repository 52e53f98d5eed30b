package main

import "time"

type timeT = time.Time

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
