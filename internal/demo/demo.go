// Package demo is the walk-through behind `logstore demo`: a store under a
// local key, the bundled sample ingested, metadata queried without the key,
// one record decrypted.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/logstore/logstore"
	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
	"github.com/logstore/logstore/query"
)

// Tenant is the demo's tenant.
const Tenant = "demo"

// rebase shifts the sample's times so its newest record is now.
type rebase struct {
	t     *engine.Tenant
	shift time.Duration
}

func (r *rebase) Append(ctx context.Context, recs []engine.Record) ([]engine.ID, error) {
	for i := range recs {
		recs[i].Time = recs[i].Time.Add(r.shift)
	}
	return r.t.Append(ctx, recs)
}

// sampleSpan returns the first and last times of the sample.
func sampleSpan() (time.Time, time.Time) {
	lines := bytes.Split(bytes.TrimSpace(logstore.DemoSample), []byte("\n"))
	t := func(line []byte) time.Time {
		i := bytes.Index(line, []byte(`"time":"`))
		if i < 0 {
			return time.Time{}
		}
		rest := line[i+8:]
		ts, _ := time.Parse(time.RFC3339Nano, string(rest[:bytes.IndexByte(rest, '"')]))
		return ts
	}
	return t(lines[0]), t(lines[len(lines)-1])
}

// Printer renders metadata rows and a decrypted record. The CLI passes its
// own, so the demo prints them as `logstore query` and `logstore show` do.
type Printer struct {
	Table  func(io.Writer, []engine.Meta) error
	Record func(io.Writer, *engine.Record, engine.Part) error
}

// Run performs the demo in dir, printing what it does to out.
func Run(ctx context.Context, dir string, out io.Writer, p Printer) (err error) {
	db, err := engine.Open(dir, nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	tn, err := db.Tenant(Tenant)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	_, last := sampleSpan()
	res, err := ingest.Ingest(ctx, &rebase{t: tn, shift: now.Sub(last)}, "demo-sample.jsonl", bytes.NewReader(logstore.DemoSample),
		ingest.Options{Format: ingest.FormatJSONL})
	if err != nil {
		return err
	}
	st, err := db.Stats(ctx)
	if err != nil {
		return err
	}
	ts := st.Tenants[Tenant]
	fmt.Fprintf(out, "== 1. ingest: %d request logs replayed from real HAR captures (Chrome, Firefox, Safari, Charles, ...)\n", res.Stored)
	fmt.Fprintf(out, "   tenant %q, key %s (master key file %s, mode 0600; no AWS account needed)\n", Tenant,
		strings.Join(ts.KeysInUse, ","), engine.LocalKeyPath(dir, Tenant))
	fmt.Fprintf(out, "   store now holds %d records (%d with payloads) in %d encrypted segment(s): %d bytes raw -> %d bytes on disk (zstd + AES-256-GCM)\n",
		ts.Records, ts.Payloads, ts.Segments, ts.RawBytes, ts.StoredBytes)

	fmt.Fprintf(out, "\n== 2. metadata queries (plaintext index, no key needed)\n")
	for _, q := range []struct {
		title string
		req   query.Request
	}{
		{"errors in the last hour: status >= 400", query.Request{From: now.Add(-time.Hour), Where: "status >= 400", Limit: 5}},
		{"one session's writes: session_id = 'sess-2' AND method IN (POST, PUT)", query.Request{Where: "session_id = 'sess-2' AND method IN (POST, PUT)", Limit: 5}},
	} {
		r, err := query.Run(ctx, tn, q.req)
		if err != nil {
			return err
		}
		c := q.req
		c.Count = true
		n, err := query.Run(ctx, tn, c)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "-- %s: %d match(es), index %s; newest %d:\n", q.title, n.Count, r.Plan.Index, len(r.Rows))
		if err := p.Table(out, r.Rows); err != nil {
			return err
		}
	}
	n, err := query.Run(ctx, tn, query.Request{From: now.Add(-10 * time.Minute), Count: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "-- records in the last 10 minutes: %d\n", n.Count)
	_, err = query.Run(ctx, tn, query.Request{Where: "path = '/login'"})
	fmt.Fprintf(out, "-- a sealed field is refused: %v\n", err)
	if !errors.Is(err, query.ErrSealedField) {
		return fmt.Errorf("demo: expected the sealed-field refusal, got %v", err)
	}

	fmt.Fprintf(out, "\n== 3. decrypt one record (only its blocks are decrypted, with the tenant's key)\n")
	r, err := query.Run(ctx, tn, query.Request{Where: "method = POST", Limit: 1})
	if err != nil {
		return err
	}
	if len(r.Rows) == 0 {
		return errors.New("demo: no POST record in the sample")
	}
	rec, err := tn.Get(ctx, r.Rows[0].ID, engine.PartAll)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := p.Record(&buf, rec, engine.PartAll); err != nil {
		return err
	}
	lines := strings.Split(buf.String(), "\n")
	for i, l := range lines {
		if i == 24 {
			fmt.Fprintf(out, "   ... (%d more lines: `logstore show --tenant %s %s`)\n", len(lines)-24, Tenant, rec.ID)
			break
		}
		if len(l) > 140 {
			l = l[:140] + "..."
		}
		fmt.Fprintf(out, "   %s\n", l)
	}

	if err := redactAndExport(ctx, db, tn, dir, out); err != nil {
		return err
	}

	return printVerify(ctx, db, dir, out)
}

// redactAndExport shows redaction before sealing (a record carrying a
// bearer token and a card number is stored masked) and a HAR export of the
// tenant's newest records that `logstore ingest` reads back.
func redactAndExport(ctx context.Context, db *engine.DB, tn *engine.Tenant, dir string, out io.Writer) error {
	fmt.Fprintf(out, "\n== 4. redaction before sealing (docs/redaction.md: the default policy masks credentials, API keys, card numbers)\n")
	secret := engine.Record{
		Meta:           engine.Meta{Time: time.Now().UTC(), SessionID: "sess-pay", Method: "POST", Host: "api.example.com", Status: 201, LatencyMs: 42},
		Path:           "/v1/payments",
		RequestHeaders: []engine.Header{{Name: "Authorization", Value: "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl"}},
		Payload: &engine.Payload{RequestContentType: "application/json",
			RequestBody: []byte(`{"amount": 1999, "card": {"number": "4111 1111 1111 1111", "cvc": "123"}}`)},
	}
	fmt.Fprintf(out, "   appended: Authorization: %s\n             body: %s\n", secret.RequestHeaders[0].Value, secret.Payload.RequestBody)
	ids, err := tn.Append(ctx, []engine.Record{secret})
	if err != nil {
		return err
	}
	stored, err := tn.Get(ctx, ids[0], engine.PartAll)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   stored:   Authorization: %s\n             body: %s\n", stored.RequestHeaders[0].Value, stored.Payload.RequestBody)
	fmt.Fprintf(out, "   (the originals were never written; `logstore redaction show -t %s` prints the policy)\n", Tenant)

	path := filepath.Clean(dir) + "-export.har"
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := ingest.NewHARWriter(f, "logstore demo")
	n := 0
	_, err = query.Stream(ctx, tn, query.Request{Where: "status >= 400"}, func(m *engine.Meta) error {
		rec, err := tn.Get(ctx, m.ID, engine.PartAll)
		if err != nil {
			return err
		}
		n++
		return w.Write(*rec)
	})
	if err == nil {
		err = w.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== 5. export: the %d error responses, decrypted, as a HAR 1.2 file (audited)\n", n)
	fmt.Fprintf(out, "   %s: open it in a browser's network panel, or `logstore ingest` it (ids kept: nothing is stored twice)\n", path)
	return nil
}

// printVerify verifies the demo tenant and says what it found.
func printVerify(ctx context.Context, db *engine.DB, dir string, out io.Writer) error {
	checks, err := db.Admin().Verify(ctx, Tenant)
	if err != nil {
		return err
	}
	bad := 0
	for _, c := range checks {
		bad += len(c.Result.Problems) + len(c.IndexProblems)
		if c.OpenErr != nil || c.KeyErr != nil {
			bad++
		}
	}
	fmt.Fprintf(out, "\n== 6. verify: %d segment(s) checked, every block authenticated, %d problem(s)\n", len(checks), bad)
	fmt.Fprintf(out, "   data directory: %s (try: logstore --dir %s query --tenant %s --since 1h --where 'status = 5xx')\n", dir, dir, Tenant)
	return nil
}
