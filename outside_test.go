package logstore

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestOutsideModuleEmbeds builds and tests testdata/embedder, a separate
// module that embeds logstore through its public packages only (engine,
// ingest, query, keys, vfs with MemFS and ErrorFS): a program outside this
// module cannot import internal/, so this fails if embedding ever needs it.
func TestOutsideModuleEmbeds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a second module; run without -short")
	}
	cmd := exec.Command("go", "test", "-count=1", "./...")
	cmd.Dir = "testdata/embedder"
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the outside module does not build or pass: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestEngineImportsNoCloudSDK: the application composes cloud providers
// (the CLI adds AWS KMS); an embedder of engine links no AWS SDK.
func TestEngineImportsNoCloudSDK(t *testing.T) {
	for _, pkg := range []string{"./engine", "./query", "./ingest", "./vfs", "./segment", "./keys"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, "aws-sdk-go-v2") || strings.Contains(dep, "aws/smithy-go") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
