package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

func TestContentIDs(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 123456789, time.UTC)
	rec := engine.Record{Meta: engine.Meta{Time: t0, Method: "GET", Status: 200}, Path: "/a"}
	var c1, c2 contentIDs
	a1, err := c1.contentID(&rec)
	require.NoError(t, err)
	a2, _ := c1.contentID(&rec) // the same content again in one input
	b1, _ := c2.contentID(&rec) // another run of the same input
	b2, _ := c2.contentID(&rec)
	require.NotEqual(t, a1, a2, "identical entries in one input stay distinct")
	require.Equal(t, a1, b1, "deterministic across runs")
	require.Equal(t, a2, b2)
	other := rec
	other.Path = "/b"
	o, _ := c2.contentID(&other)
	require.NotEqual(t, b1, o)
	withID := rec
	withID.ID = engine.ID{9}
	w, _ := (&contentIDs{}).contentID(&withID)
	require.Equal(t, a1, w, "the id is not content")
	require.Equal(t, byte(t0.UnixMilli()), a1[5], "ids start with the record's millisecond")
}

// memTenant is an in-memory Appender and Finder.
type memTenant struct{ byID map[engine.ID]engine.Record }

func (m *memTenant) Append(_ context.Context, recs []engine.Record) ([]engine.ID, error) {
	ids := make([]engine.ID, len(recs))
	for i, r := range recs {
		m.byID[r.ID] = r
		ids[i] = r.ID
	}
	return ids, nil
}

func (m *memTenant) GetMeta(_ context.Context, id engine.ID) (*engine.Meta, error) {
	if r, ok := m.byID[id]; ok {
		return &r.Meta, nil
	}
	return nil, engine.ErrNotFound
}

func TestIdempotentIngest(t *testing.T) {
	in := `{"time":"2026-11-01T09:00:00Z","method":"GET","status":200}
{"time":"2026-11-01T09:00:00Z","method":"GET","status":200}
{"time":"2026-11-01T09:00:01Z","method":"POST","status":201}
`
	m := &memTenant{byID: map[engine.ID]engine.Record{}}
	res, err := Ingest(context.Background(), m, "x", strings.NewReader(in), Options{Idempotent: true, BatchSize: 2})
	require.NoError(t, err)
	require.Equal(t, 3, res.Stored)
	require.Len(t, m.byID, 3)
	res, err = Ingest(context.Background(), m, "x", strings.NewReader(in), Options{Idempotent: true})
	require.NoError(t, err)
	require.Zero(t, res.Stored)
	require.Equal(t, 3, res.Duplicates)
	_, err = Ingest(context.Background(), struct{ Appender }{m}, "x", strings.NewReader(in), Options{Idempotent: true})
	require.ErrorIs(t, err, ErrUsage, "an Appender that cannot look records up")
}
