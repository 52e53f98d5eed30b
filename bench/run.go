package bench

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/awskms"
	"github.com/logstore/logstore/keys/kmstest"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// Options configure Run.
type Options struct {
	// Records per measurement (default 20,000).
	Records int
	// RecordSize is the sealed size of a request log (default 1 KiB).
	RecordSize int
	// Dir holds the temporary stores (default a new temp dir, removed after).
	Dir string
}

// Row is one measured configuration.
type Row struct {
	Group          string  `json:"group"`
	Name           string  `json:"name"`
	RecordsPerSec  float64 `json:"records_per_sec,omitempty"`
	MBPerSec       float64 `json:"mb_per_sec,omitempty"`
	DiskPerRecord  float64 `json:"disk_bytes_per_record,omitempty"`
	KMSCallsPer10k float64 `json:"kms_calls_per_10k,omitempty"`
	AllocsPerOp    float64 `json:"allocs_per_record,omitempty"`
	LatencyMicros  float64 `json:"latency_us_p50,omitempty"`
}

// Ratio compares two rows.
type Ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target,omitempty"`
}

// Report is one full run.
type Report struct {
	CPU        string  `json:"cpu"`
	Cores      int     `json:"cores"`
	GoVersion  string  `json:"go"`
	Records    int     `json:"records"`
	RecordSize int     `json:"record_size"`
	Rows       []Row   `json:"rows"`
	Ratios     []Ratio `json:"ratios"`
}

func (r *Report) row(group, name string) *Row {
	for i := range r.Rows {
		if r.Rows[i].Group == group && r.Rows[i].Name == name {
			return &r.Rows[i]
		}
	}
	return &Row{}
}

// CPUModel reads the processor name (Linux), else GOARCH.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if i := strings.Index(line, ":"); i > 0 {
					return strings.TrimSpace(line[i+1:])
				}
			}
		}
	}
	return runtime.GOARCH
}

// Run measures everything once, side by side.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Records <= 0 {
		o.Records = 20_000
	}
	if o.RecordSize <= 0 {
		o.RecordSize = 1 << 10
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "logstore-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	rep := &Report{CPU: CPUModel(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Records: o.Records, RecordSize: o.RecordSize}
	if err := measureBlocks(rep); err != nil {
		return nil, err
	}
	kms, err := kmstest.Start("us-east-1")
	if err != nil {
		return nil, err
	}
	defer kms.Close()
	if err := measureAppend(ctx, rep, o, kms); err != nil {
		return nil, err
	}
	if err := measureReads(ctx, rep, o, kms); err != nil {
		return nil, err
	}
	ratio := func(name string, a, b *Row, f func(*Row) float64, target string) {
		if f(b) > 0 {
			rep.Ratios = append(rep.Ratios, Ratio{Name: name, Value: f(a) / f(b), Target: target})
		}
	}
	mbps := func(r *Row) float64 { return r.MBPerSec }
	rps := func(r *Row) float64 { return r.RecordsPerSec }
	disk := func(r *Row) float64 { return r.DiskPerRecord }
	kmsc := func(r *Row) float64 { return r.KMSCallsPer10k }
	ratio("seal zstd 64KiB / zstd alone (speed)", rep.row("block", "seal codec=zstd enc=on"), rep.row("block", "zstd alone"), mbps, ">= 0.85")
	ratio("seal zstd 64KiB enc=on / enc=off (speed)", rep.row("block", "seal codec=zstd enc=on"), rep.row("block", "seal codec=zstd enc=off"), mbps, "")
	ratio("open zstd 64KiB enc=on / enc=off (speed)", rep.row("block", "open codec=zstd enc=on"), rep.row("block", "open codec=zstd enc=off"), mbps, "")
	ratio("append logstore enc=on / enc=off (records/s)", rep.row("append", "logstore enc=on"), rep.row("append", "logstore enc=off"), rps, ">= 0.9")
	ratio("disk logstore enc=on / enc=off (bytes/record)", rep.row("append", "logstore enc=on"), rep.row("append", "logstore enc=off"), disk, "<= 1.02")
	ratio("disk logstore batch=1 / batch=100 (bytes/record)", rep.row("append", "logstore enc=on batch=1"), rep.row("append", "logstore enc=on"), disk, "<= 1.1")
	ratio("append logstore batch=1 / batch=100 (records/s)", rep.row("append", "logstore enc=on batch=1"), rep.row("append", "logstore enc=on"), rps, "")
	ratio("append logstore / per-record AES-GCM in Pebble (records/s)", rep.row("append", "logstore enc=on"), rep.row("append", "peer per-record AES-GCM in Pebble"), rps, "")
	ratio("append logstore / per-record KMS envelope (records/s)", rep.row("append", "logstore enc=on"), rep.row("append", "peer per-record KMS envelope"), rps, "")
	ratio("append logstore / zstd files, no index (records/s)", rep.row("append", "logstore enc=on"), rep.row("append", "floor zstd files, no index"), rps, ">= 0.5")
	ratio("disk logstore / zstd files, no index (bytes/record)", rep.row("append", "logstore enc=on"), rep.row("append", "floor zstd files, no index"), disk, "")
	ratio("disk logstore / per-record AES-GCM in Pebble (bytes/record)", rep.row("append", "logstore enc=on"), rep.row("append", "peer per-record AES-GCM in Pebble"), disk, "")
	ratio("KMS calls: per-record envelope / logstore", rep.row("append", "peer per-record KMS envelope"), rep.row("append", "logstore enc=on kms"), kmsc, ">= 1000")
	return rep, nil
}

// nullFS discards writes (to time sealing without a growing file).
type nullFS struct{ vfs.FS }
type nullFile struct{ n int64 }

func (nullFS) Create(string) (vfs.File, error)             { return &nullFile{}, nil }
func (nullFS) SyncDir(string) error                        { return nil }
func (f *nullFile) Write(p []byte) (int, error)            { f.n += int64(len(p)); return len(p), nil }
func (f *nullFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (f *nullFile) ReadAt([]byte, int64) (int, error)      { return 0, io.EOF }
func (f *nullFile) Close() error                           { return nil }
func (f *nullFile) Sync() error                            { return nil }
func (f *nullFile) Truncate(n int64) error                 { f.n = n; return nil }
func (f *nullFile) Size() (int64, error)                   { return f.n, nil }

// blockEntries builds about size bytes of request logs as segment entries.
func blockEntries(size int) ([]segment.Entry, int) {
	w := NewWorkload(1, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	var es []segment.Entry
	raw := 0
	for raw < size {
		r := w.Record(1<<10, 0)
		data := []byte(fmt.Sprint(r.Path, r.Query, r.ClientIP, r.RequestHeaders, r.ResponseHeaders))
		es = append(es, segment.Entry{Time: r.Time.UnixNano(), Meta: []byte(r.Method + r.Host), Data: data})
		raw += len(data)
	}
	return es, raw
}

var benchDEK = bytes.Repeat([]byte{7}, 32)

func timeIt(minDur time.Duration, f func() error) (int, time.Duration, error) {
	n := 0
	start := time.Now()
	for time.Since(start) < minDur {
		if err := f(); err != nil {
			return n, 0, err
		}
		n++
	}
	return n, time.Since(start), nil
}

func measureBlocks(rep *Report) error {
	es, raw := blockEntries(64 << 10)
	var plain []byte
	for _, e := range es {
		plain = append(plain, e.Data...)
	}
	mb := func(n int, d time.Duration) float64 { return float64(n*raw) / d.Seconds() / 1e6 }
	comp, err := segment.Compress(segment.CodecZstd, nil, plain)
	if err != nil {
		return err
	}
	n, d, err := timeIt(300*time.Millisecond, func() error {
		_, err := segment.Compress(segment.CodecZstd, comp[:0], plain)
		return err
	})
	if err != nil {
		return err
	}
	rep.Rows = append(rep.Rows, Row{Group: "block", Name: "zstd alone", MBPerSec: mb(n, d)})
	blk, _ := aes.NewCipher(benchDEK)
	g, _ := cipher.NewGCM(blk)
	nonce := make([]byte, 12)
	out := make([]byte, 0, len(plain)+16)
	n, d, _ = timeIt(300*time.Millisecond, func() error { g.Seal(out[:0], nonce, plain, nil); return nil })
	rep.Rows = append(rep.Rows, Row{Group: "block", Name: "AES-256-GCM alone", MBPerSec: mb(n, d)})
	for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecS2} {
		for _, enc := range []bool{true, false} {
			p := segment.Params{Tenant: "bench", Codec: codec, FS: nullFS{}}
			if enc {
				p.Cipher, p.DEK, p.KeyURI, p.Wrapped = segment.CipherAES256GCM, benchDEK, "local://bench", []byte("w")
			}
			w, err := segment.Create("/null", p)
			if err != nil {
				return err
			}
			n, d, err := timeIt(300*time.Millisecond, func() error { _, err := w.Append(es); return err })
			_ = w.Close()
			if err != nil {
				return err
			}
			rep.Rows = append(rep.Rows, Row{Group: "block", Name: fmt.Sprintf("seal codec=%s enc=%s", codec, onOff(enc)), MBPerSec: mb(n, d)})

			mem := vfs.NewMem()
			p.FS = mem
			w, err = segment.Create("/s", p)
			if err != nil {
				return err
			}
			if _, err := w.Append(es); err != nil {
				return err
			}
			_ = w.Seal()
			_ = w.Close()
			r, err := segment.Open("/s", &segment.ReadOptions{FS: mem, AllowPlaintext: !enc}) // the baseline is plaintext
			if err != nil {
				return err
			}
			if enc {
				_ = r.Unlock(benchDEK)
			}
			n, d, err = timeIt(300*time.Millisecond, func() error { _, err := r.ReadBlock(0); return err })
			_ = r.Close()
			if err != nil {
				return err
			}
			rep.Rows = append(rep.Rows, Row{Group: "block", Name: fmt.Sprintf("open codec=%s enc=%s", codec, onOff(enc)), MBPerSec: mb(n, d)})
		}
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// KMSOptions points the AWS KMS provider at a test KMS through the real SDK.
func KMSOptions(s *kmstest.Server) *awskms.Options {
	creds := credentials.NewStaticCredentialsProvider("AKIDBENCH", "SECRET", "")
	return &awskms.Options{LoadConfig: func(ctx context.Context, region string) (aws.Config, error) {
		return aws.Config{Region: region, Credentials: creds, BaseEndpoint: aws.String(s.URL())}, nil
	}}
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func measureAppend(ctx context.Context, rep *Report, o Options, kms *kmstest.Server) error {
	recs := NewWorkload(2, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)).Records(o.Records, o.RecordSize)
	raw := 0
	for i := range recs {
		raw += sealedSize(&recs[i])
	}
	type cfg struct {
		name string
		open func(dir string) (Store, error)
		kms  bool
	}
	kmsURI := "aws-kms://" + kms.CreateKey()
	cfgs := []cfg{
		{"logstore enc=on", func(dir string) (Store, error) {
			db, err := engine.Open(dir, &engine.Options{Sync: engine.SyncNever, RetentionInterval: -1, NoAudit: true})
			return LogstoreStore{db}, err
		}, false},
		{"logstore enc=on batch=1", func(dir string) (Store, error) {
			db, err := engine.Open(dir, &engine.Options{Sync: engine.SyncNever, RetentionInterval: -1, NoAudit: true})
			return LogstoreStore{db}, err
		}, false},
		{"logstore enc=off", func(dir string) (Store, error) {
			db, err := engine.Open(dir, &engine.Options{Sync: engine.SyncNever, Plaintext: true, RetentionInterval: -1, NoAudit: true})
			return LogstoreStore{db}, err
		}, false},
		{"logstore enc=on kms", func(dir string) (Store, error) {
			db, err := engine.Open(dir, &engine.Options{Sync: engine.SyncNever, RetentionInterval: -1, NoAudit: true, KMS: []keys.Provider{awskms.New(*KMSOptions(kms))}})
			if err != nil {
				return nil, err
			}
			if _, err := db.Admin().LinkKey(ctx, "bench", kmsURI); err != nil {
				return nil, err
			}
			return LogstoreStore{db}, nil
		}, true},
		{"peer per-record AES-GCM in Pebble", func(dir string) (Store, error) { return OpenPebbleAEAD(dir) }, false},
		{"floor zstd files, no index", func(dir string) (Store, error) { return OpenZstdFiles(dir) }, false},
		{"peer per-record KMS envelope", func(dir string) (Store, error) {
			p, err := OpenPebbleAEAD(dir)
			if err != nil {
				return nil, err
			}
			p.Envelope, p.KeyURI = awskms.New(*KMSOptions(kms)), kmsURI
			return p, nil
		}, true},
	}
	// Five interleaved rounds, the order rotated each round, median per
	// configuration: a noisy neighbour or a warm-up hits every one alike.
	rounds := map[string][]Row{}
	for round := 0; round < 5; round++ {
		for k := range cfgs {
			i := (k + round) % len(cfgs)
			c := cfgs[i]
			row, err := appendOnce(ctx, o, c.name, c.open, c.kms, recs, raw, kms, filepath.Join(o.Dir, fmt.Sprintf("append-%d-%d", round, i)))
			if err != nil {
				return err
			}
			rounds[c.name] = append(rounds[c.name], row)
		}
	}
	for _, c := range cfgs {
		rs := rounds[c.name]
		sort.Slice(rs, func(a, b int) bool { return rs[a].RecordsPerSec < rs[b].RecordsPerSec })
		rep.Rows = append(rep.Rows, rs[len(rs)/2])
	}
	return nil
}

func appendOnce(ctx context.Context, o Options, name string, open func(string) (Store, error), isKMS bool,
	recs []engine.Record, raw int, kms *kmstest.Server, dir string) (Row, error) {
	s, err := open(dir)
	if err != nil {
		return Row{}, fmt.Errorf("%s: %w", name, err)
	}
	n := len(recs)
	if strings.Contains(name, "envelope") && n > 2000 {
		n = 2000 // a KMS round trip per record: measure a slice, report per-record rates
	}
	before := kms.Calls("GenerateDataKey") + kms.Calls("Decrypt")
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	batch := 100
	if strings.HasSuffix(name, "batch=1") {
		batch = 1 // one record per Append: the journal makes the blocks full
	}
	for j := 0; j < n; j += batch {
		if err := s.Append(ctx, "bench", recs[j:min(j+batch, n)]); err != nil {
			_ = s.Close()
			return Row{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	el := time.Since(start)
	runtime.ReadMemStats(&ms1)
	calls := kms.Calls("GenerateDataKey") + kms.Calls("Decrypt") - before
	if err := s.Close(); err != nil {
		return Row{}, err
	}
	row := Row{Group: "append", Name: name, RecordsPerSec: float64(n) / el.Seconds(),
		MBPerSec: float64(raw) * float64(n) / float64(len(recs)) / el.Seconds() / 1e6, DiskPerRecord: float64(dirSize(dir)) / float64(n),
		AllocsPerOp: float64(ms1.Mallocs-ms0.Mallocs) / float64(n)}
	if isKMS {
		row.KMSCallsPer10k = float64(calls) * 10_000 / float64(n)
	}
	_ = os.RemoveAll(dir)
	return row, nil
}

func measureReads(ctx context.Context, rep *Report, o Options, kms *kmstest.Server) error {
	recs := NewWorkload(3, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)).Records(o.Records, o.RecordSize)
	uri := "aws-kms://" + kms.CreateKey()
	for _, cached := range []bool{true, false} {
		dc := keys.DefaultCacheOptions()
		if !cached {
			dc.MaxAge = 0
		}
		dir := filepath.Join(o.Dir, fmt.Sprintf("read-%v", cached))
		db, err := engine.Open(dir, &engine.Options{Sync: engine.SyncNever, RetentionInterval: -1, NoAudit: true, KMS: []keys.Provider{awskms.New(*KMSOptions(kms))}, DEKCache: &dc})
		if err != nil {
			return err
		}
		if _, err := db.Admin().LinkKey(ctx, "bench", uri); err != nil {
			return err
		}
		bt, err := db.Tenant("bench")
		if err != nil {
			return err
		}
		var ids []engine.ID
		for j := 0; j < len(recs); j += 500 {
			got, err := bt.Append(ctx, recs[j:min(j+500, len(recs))])
			if err != nil {
				return err
			}
			ids = append(ids, got...)
		}
		lat := make([]time.Duration, 0, 500)
		for j := 0; j < 500; j++ {
			start := time.Now()
			if _, err := bt.Get(ctx, ids[(j*7919)%len(ids)], engine.PartLog); err != nil {
				return err
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		name := "get 1KiB dek=cached"
		if !cached {
			name = "get 1KiB dek=uncached (KMS Decrypt per read)"
		}
		rep.Rows = append(rep.Rows, Row{Group: "read", Name: name, LatencyMicros: float64(lat[len(lat)/2].Microseconds())})
		if cached {
			// Queries over the same store.
			trace := recs[len(recs)/2].TraceID
			start := time.Now()
			n := 0
			for _, err := range bt.Scan(ctx, engine.ScanOptions{Index: engine.ByTrace(trace)}) {
				if err != nil {
					return err
				}
				n++
			}
			rep.Rows = append(rep.Rows, Row{Group: "query", Name: "selective: trace_id = X", LatencyMicros: float64(time.Since(start).Microseconds())})
			start = time.Now()
			c, err := bt.Count(ctx, engine.ScanOptions{})
			if err != nil {
				return err
			}
			el := time.Since(start)
			rep.Rows = append(rep.Rows, Row{Group: "query", Name: fmt.Sprintf("count full time range (%d records)", c), LatencyMicros: float64(el.Microseconds()),
				RecordsPerSec: float64(c) / el.Seconds()})
		}
		if err := db.Close(); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable prints the report for a person.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %s, %d cores, %s; %d records of ~%d B per append measurement\n\n", r.CPU, r.Cores, r.GoVersion, r.Records, r.RecordSize)
	fmt.Fprintf(w, "%-7s %-45s %12s %10s %12s %12s %12s %10s\n", "GROUP", "NAME", "RECORDS/S", "MB/S", "DISK B/REC", "KMS/10K REC", "ALLOCS/REC", "P50 µs")
	for _, x := range r.Rows {
		fmt.Fprintf(w, "%-7s %-45s %12s %10s %12s %12s %12s %10s\n", x.Group, x.Name, num(x.RecordsPerSec, 0), num(x.MBPerSec, 1),
			num(x.DiskPerRecord, 1), num(x.KMSCallsPer10k, 1), num(x.AllocsPerOp, 1), num(x.LatencyMicros, 0))
	}
	fmt.Fprintf(w, "\nratios:\n")
	for _, x := range r.Ratios {
		t := ""
		if x.Target != "" {
			t = " (target " + x.Target + ")"
		}
		fmt.Fprintf(w, "  %-62s %8.3f%s\n", x.Name, x.Value, t)
	}
	return nil
}

func num(v float64, prec int) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}
