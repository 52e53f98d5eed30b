// Package crashtest holds what the process-crash test shares with its driver
// program: the deterministic records the driver writes.
package crashtest

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/logstore/logstore/engine"
)

// Marker is carried by every sealed field, so leak scans can look for it.
const Marker = "CRASH-SEALED-7d1e"

// Record returns the n-th record of a run; the test regenerates it to
// compare what it reads back.
func Record(run, n int) engine.Record {
	rng := rand.New(rand.NewSource(int64(run)<<32 | int64(n)))
	r := engine.Record{
		Meta: engine.Meta{
			Time:      time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(run)*time.Hour + time.Duration(n)*time.Millisecond),
			Method:    []string{"GET", "POST"}[rng.Intn(2)],
			Status:    []int{200, 404, 500}[rng.Intn(3)],
			SessionID: fmt.Sprintf("run-%d", run),
		},
		Path:     fmt.Sprintf("/%s/%d", Marker, n),
		ClientIP: Marker + "-ip",
		RequestHeaders: []engine.Header{{Name: "x-sealed-marker", Value: "sealed " + Marker},
			{Name: "x-n", Value: fmt.Sprint(n)}},
	}
	if n%2 == 0 {
		body := make([]byte, 100+rng.Intn(3000))
		rng.Read(body)
		copy(body, Marker)
		r.Payload = &engine.Payload{RequestBody: body, ResponseBody: []byte(Marker + " response")}
	}
	return r
}
