package engine

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// Tests never reach past 127.0.0.1: no EC2 instance-metadata lookups by
	// the AWS SDK's default credential chain.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Exit(m.Run())
}
