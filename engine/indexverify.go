package engine

import (
	"context"
)

// VerifyIndex reads every entry of the index, which makes Pebble check the
// checksum of every block: nil, or an error matching ErrIndexCorrupt (the
// repair is `logstore segments reindex`). It takes time proportional to the
// index's size.
func (db *DB) VerifyIndex(ctx context.Context) error {
	n := 0
	err := guardIndex(func() error {
		return db.index.scan(nil, nil, func(_, _ []byte) error {
			if n++; n%4096 == 0 {
				return ctx.Err()
			}
			return nil
		})
	})
	if err != nil && isCorruption(err) {
		return db.index.typed(err)
	}
	return err
}
