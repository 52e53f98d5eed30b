package engine

// Regression tests from the review of the embedding API (Tenant, Admin,
// ScanOptions, the schema): bad input is refused with typed errors, never
// answered with nothing or a panic; scans are one moment's view.

import (
	"context"
	"encoding/json"
	"iter"
	"math/rand"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

func memDB(t *testing.T) *testDB {
	return openTest(t, vfs.NewMem(), "/store", func(o *Options) { o.IndexInMemory = true })
}

func rec(ts time.Time, status int) Record {
	return Record{Meta: Meta{Time: ts, Method: "GET", Status: status, SessionID: "s"}, Path: "/"}
}

func collect(seq iter.Seq2[*Meta, error]) (ms []*Meta, err error) {
	for m, e := range seq {
		if e != nil {
			return ms, e
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// TestAPINilContext: a nil context is refused, never a panic (a panic under
// a lock would leave Close blocked for ever in a server that recovers).
func TestAPINilContext(t *testing.T) {
	db := memDB(t)
	acme := db.tn("acme")
	ids, err := acme.Append(bg, []Record{rec(t0, 200)})
	require.NoError(t, err)
	var nilctx context.Context
	_, err = acme.Append(nilctx, []Record{rec(t0, 200)})
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = collect(acme.Scan(nilctx, ScanOptions{}))
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = acme.Count(nilctx, ScanOptions{})
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = acme.GetMeta(nilctx, ids[0])
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = acme.Get(nilctx, ids[0], PartLog)
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = db.Admin().Tenants(nilctx)
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorIs(t, db.Admin().SetRetention(nilctx, "acme", time.Hour), ErrInvalidOptions)
	_, err = db.Stats(nilctx)
	require.ErrorIs(t, err, ErrInvalidOptions)
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked")
	}
}

// TestAPIBadScanOptions: options no scan can honour are refused.
func TestAPIBadScanOptions(t *testing.T) {
	db := memDB(t)
	defer db.Close()
	acme := db.tn("acme")
	_, err := acme.Append(bg, []Record{rec(t0, 500)})
	require.NoError(t, err)
	for _, o := range []ScanOptions{
		{Limit: -1},
		{From: t0.Add(time.Hour), To: t0},
		{Index: ByStatus(-1)},
		{Index: ByStatus(1000)},
		{After: &Cursor{}},
	} {
		_, err := acme.Count(bg, o)
		require.ErrorIs(t, err, ErrInvalidOptions, "%+v", o)
		require.True(t, strings.HasPrefix(err.Error(), "logstore/engine:"), err.Error())
	}
	_, err = ByField(nil)
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = ByField(LookupField("span_id"), "x")
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = ByField(&Field{name: "host", kind: KindString, indexed: true}, "500")
	require.ErrorIs(t, err, ErrInvalidOptions, "a look-alike Field is not a schema row")
	_, err = ByField(LookupField("status"), "abc")
	require.ErrorIs(t, err, ErrInvalidOptions)
	// Far bounds mean unbounded, not nothing.
	for _, o := range []ScanOptions{
		{To: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{From: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		n, err := acme.Count(bg, o)
		require.NoError(t, err)
		require.Equal(t, 1, n, "%+v", o)
	}
	n, err := acme.Count(bg, ScanOptions{From: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestAPIRecordValidation: times the store cannot represent, methods that
// are not HTTP tokens, and the error's package prefix.
func TestAPIRecordValidation(t *testing.T) {
	db := memDB(t)
	defer db.Close()
	acme := db.tn("acme")
	for _, ts := range []time.Time{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)} {
		_, err := acme.Append(bg, []Record{rec(ts, 200)})
		require.ErrorIs(t, err, ErrInvalidRecord, ts.String())
	}
	for _, m := range []string{"G\xffT", "G\x00T", "GE T", "", strings.Repeat("A", 33)} {
		r := rec(t0, 200)
		r.Method = m
		_, err := acme.Append(bg, []Record{r})
		require.ErrorIs(t, err, ErrInvalidRecord, "%q", m)
	}
	r := rec(t0, 200)
	r.Method = "get" // case-sensitive, stored as given
	_, err := acme.Append(bg, []Record{r})
	require.NoError(t, err)
	n, err := acme.Count(bg, ScanOptions{Index: ByMethod("get")})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = acme.Append(bg, []Record{rec(t0, 200), {Meta: Meta{Method: "GET"}}})
	require.ErrorIs(t, err, ErrInvalidRecord)
	require.True(t, strings.HasPrefix(err.Error(), "logstore/engine: invalid record: record 1 of 2: "), err.Error())
}

// TestAPIAdminValidatesTenants: every operator call about a tenant checks
// its name; "" means every tenant only where documented.
func TestAPIAdminValidatesTenants(t *testing.T) {
	db := memDB(t)
	defer db.Close()
	a := db.Admin()
	for _, n := range []string{"..", "../x", "a/b"} {
		_, e1 := a.KeyURI(bg, n)
		_, e2 := a.Verify(bg, n)
		_, e3 := a.Audit(bg, n, time.Time{})
		_, e4 := a.Segments(bg, n)
		e5 := a.SetRetention(bg, n, time.Hour)
		_, e6 := a.KeyStatus(bg, n)
		for i, err := range []error{e1, e2, e3, e4, e5, e6} {
			require.ErrorIs(t, err, ErrInvalidTenant, "%q call %d", n, i)
		}
	}
	_, err := a.Verify(bg, "")
	require.NoError(t, err)
	var zero Admin
	_, err = zero.Tenants(bg)
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.Nil(t, zero.Attested())
	var nilT *Tenant
	require.Equal(t, "", nilT.Name())
}

// TestAPIExplicitIDs: an id the tenant has is refused, whole call, so an
// identical retry does not store a second copy once the first is indexed.
func TestAPIExplicitIDs(t *testing.T) {
	db := memDB(t)
	defer db.Close()
	acme := db.tn("acme")
	ids, err := acme.Append(bg, []Record{rec(t0, 500)})
	require.NoError(t, err)
	again := rec(t0.Add(time.Second), 200)
	again.ID = ids[0]
	_, err = acme.Append(bg, []Record{rec(t0, 201), again})
	require.ErrorIs(t, err, ErrExists)
	fresh := rec(t0, 200)
	fresh.ID = ids[0]
	fresh.ID[15] ^= 1
	_, err = acme.Append(bg, []Record{fresh, fresh})
	require.ErrorIs(t, err, ErrExists, "repeated within the call")
	all, err := collect(acme.Scan(bg, ScanOptions{}))
	require.NoError(t, err)
	require.Len(t, all, 1, "nothing of the refused calls was written")
	by500, err := collect(acme.Scan(bg, ScanOptions{Index: ByStatus(500)}))
	require.NoError(t, err)
	require.Len(t, by500, 1)
	_, err = acme.Append(bg, []Record{fresh})
	require.NoError(t, err)
}

// TestAPIRecordJSON: a Record round-trips through JSON, and no JSON name is
// used twice between Meta and Record.
func TestAPIRecordJSON(t *testing.T) {
	r := Record{Meta: Meta{Time: t0, Method: "GET", Status: 200, HasPayload: true}, Path: "/"}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var back Record
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r, back)
	names := map[string]string{}
	for _, typ := range []reflect.Type{reflect.TypeOf(Meta{}), reflect.TypeOf(Record{})} {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Anonymous {
				continue
			}
			n := strings.Split(f.Tag.Get("json"), ",")[0]
			require.NotContains(t, names, n, "json name %q twice", n)
			names[n] = f.Name
		}
	}
}

// TestSchemaMatchesMeta: the schema table has one row per Meta field (but
// HasPayload), named by its JSON tag, of the right kind, whose accessor
// reaches that very field: a field added to Meta without a row fails here.
func TestSchemaMatchesMeta(t *testing.T) {
	mt := reflect.TypeOf(Meta{})
	rows := map[string]*Field{}
	for _, f := range Fields() {
		_, dup := rows[f.name]
		require.False(t, dup, f.name)
		rows[f.name] = f
	}
	seen := 0
	for i := 0; i < mt.NumField(); i++ {
		sf := mt.Field(i)
		if sf.Name == "HasPayload" {
			continue
		}
		name := strings.Split(sf.Tag.Get("json"), ",")[0]
		f := rows[name]
		require.NotNil(t, f, "Meta.%s (json %q) has no row in Fields", sf.Name, name)
		seen++
		var want FieldKind
		switch sf.Type {
		case reflect.TypeOf(ID{}):
			want = KindID
		case reflect.TypeOf(time.Time{}):
			want = KindTime
		default:
			switch sf.Type.Kind() {
			case reflect.String:
				want = KindString
			case reflect.Int, reflect.Int64:
				want = KindInt
			case reflect.Float64:
				want = KindFloat
			default:
				t.Fatalf("Meta.%s: unexpected type %v", sf.Name, sf.Type)
			}
		}
		require.Equal(t, want, f.kind, sf.Name)
		// the accessor reaches this very struct field
		var m Meta
		fv := reflect.ValueOf(&m).Elem().Field(i)
		switch {
		case f.str != nil:
			require.Equal(t, fv.Addr().Pointer(), reflect.ValueOf(f.str(&m)).Pointer(), sf.Name)
		case f.int16 != nil:
			require.Equal(t, fv.Addr().Pointer(), reflect.ValueOf(f.int16(&m)).Pointer(), sf.Name)
		case f.int64 != nil:
			require.Equal(t, fv.Addr().Pointer(), reflect.ValueOf(f.int64(&m)).Pointer(), sf.Name)
		case f.float != nil:
			require.Equal(t, fv.Addr().Pointer(), reflect.ValueOf(f.float(&m)).Pointer(), sf.Name)
		}
	}
	require.Equal(t, len(fields), seen)
}

// TestScanIteratorContract: broken-off scans release their iterators, a
// Seq2 can be run again, a kept *Meta outlives Close.
func TestScanIteratorContract(t *testing.T) {
	db := memDB(t)
	acme := db.tn("acme")
	var recs []Record
	for i := range 100 {
		recs = append(recs, rec(t0.Add(time.Duration(i)*time.Millisecond), 200+i%3))
	}
	_, err := acme.Append(bg, recs)
	require.NoError(t, err)
	seq := acme.Scan(bg, ScanOptions{Index: ByStatus(200, 201, 202)})
	var kept *Meta
	for i := 0; i < 20; i++ {
		for m, err := range seq {
			require.NoError(t, err)
			kept = m
			break
		}
	}
	a, _ := collect(seq)
	b, _ := collect(seq)
	require.Len(t, a, 100)
	require.Equal(t, a, b)
	require.Equal(t, recs[99].Time, kept.Time)
	require.NoError(t, db.Close())
	_, err = collect(seq)
	require.ErrorIs(t, err, ErrClosed)
	require.Equal(t, recs[99].Time, kept.Time) // a kept *Meta survives Close
}

// TestScanIsOneMoment: a scan over several index values reads one snapshot:
// a pair of records appended in one Append (statuses 100 and 999) is seen
// whole or not at all.
func TestScanIsOneMoment(t *testing.T) {
	db := memDB(t)
	defer db.Close()
	acme := db.tn("acme")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var pairs atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		ts := t0
		for {
			select {
			case <-stop:
				return
			default:
			}
			ts = ts.Add(time.Millisecond)
			time.Sleep(50 * time.Microsecond) // a steady stream, not a flood
			_, err := acme.Append(bg, []Record{rec(ts, 100), rec(ts, 999)})
			if err != nil {
				t.Error(err)
				return
			}
			pairs.Add(1)
		}
	}()
	// 100 first, 999 last, many iterators opened in between: without a
	// snapshot, records appended meanwhile are seen under 999 only.
	codes := make([]int, 0, 101)
	for s := 100; s < 200; s++ {
		codes = append(codes, s)
	}
	codes = append(codes, 999)
	torn := 0
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; torn == 0 && (i < 30 || pairs.Load() < 300) && time.Now().Before(deadline); i++ {
		by := map[int]int{}
		for m, err := range acme.Scan(bg, ScanOptions{Index: ByStatus(codes...)}) {
			require.NoError(t, err)
			by[m.Status]++
		}
		if by[100] != by[999] {
			torn++
			t.Errorf("scan %d: %d records with status 100, %d with 999: half of an Append is visible", i, by[100], by[999])
		}
	}
	close(stop)
	wg.Wait()
	require.GreaterOrEqual(t, pairs.Load(), int64(300), "the scans ran beside appends")
}

// TestScanBesideDelete: records removed while a scan walks (DeleteTenant,
// retention) do not end the scan: it reads its snapshot.
func TestScanBesideDelete(t *testing.T) {
	db := memDB(t)
	defer db.Close()
	acme := db.tn("acme")
	var recs []Record
	for i := range 10 {
		recs = append(recs, rec(t0.Add(time.Duration(i)*time.Second), 200))
	}
	_, err := acme.Append(bg, recs)
	require.NoError(t, err)
	n := 0
	var serr error
	for _, err := range acme.Scan(bg, ScanOptions{}) {
		if err != nil {
			serr = err
			break
		}
		if n == 0 {
			_, derr := db.Admin().DeleteTenant(bg, "acme")
			require.NoError(t, derr)
		}
		n++
	}
	require.NoError(t, serr)
	require.Equal(t, 10, n)
}

// TestIndexConstructors: every typed index selects exactly the records a
// filter over all of them selects, newest first, over several values.
func TestIndexConstructors(t *testing.T) {
	db := memDB(t)
	defer db.Close()
	acme := db.tn("acme")
	recs := genRecords(rand.New(rand.NewSource(5)), 300, t0)
	for i := range recs {
		recs[i].Host = []string{"a.example", "b.example", ""}[i%3]
		recs[i].ServiceID = []string{"svc-1", "svc-2"}[i%2]
	}
	_, err := acme.Append(bg, recs)
	require.NoError(t, err)
	for _, c := range []struct {
		ix   Index
		want func(r *Record) bool
	}{
		{ByTime(), func(*Record) bool { return true }},
		{BySession("sess-1", "sess-3"), func(r *Record) bool { return r.SessionID == "sess-1" || r.SessionID == "sess-3" }},
		{ByTrace(recs[7].TraceID), func(r *Record) bool { return r.TraceID == recs[7].TraceID }},
		{ByMethod("PUT", "DELETE"), func(r *Record) bool { return r.Method == "PUT" || r.Method == "DELETE" }},
		{ByHost("b.example"), func(r *Record) bool { return r.Host == "b.example" }},
		{ByRoute("route-0", "route-2"), func(r *Record) bool { return r.RouteID == "route-0" || r.RouteID == "route-2" }},
		{ByService("svc-2"), func(r *Record) bool { return r.ServiceID == "svc-2" }},
		{ByStatus(404, 503), func(r *Record) bool { return r.Status == 404 || r.Status == 503 }},
	} {
		var want []time.Time
		for i := len(recs) - 1; i >= 0; i-- {
			if c.want(&recs[i]) {
				want = append(want, recs[i].Time)
			}
		}
		got, err := collect(acme.Scan(bg, ScanOptions{Index: c.ix}))
		require.NoError(t, err, c.ix.Field())
		times := make([]time.Time, len(got))
		for i, m := range got {
			times[i] = m.Time
		}
		require.Equal(t, want, times, c.ix.Field())
		n, err := acme.Count(bg, ScanOptions{Index: c.ix})
		require.NoError(t, err)
		require.Equal(t, len(want), n, c.ix.Field())
	}
}
