// Command logstore is the operator's CLI for a logstore data directory. It
// only parses flags and prints; the logic lives in the packages.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/internal/demo"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var dir string
	root := &cobra.Command{
		Use:           "logstore",
		Short:         "Encrypted storage for API-gateway debugger logs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&dir, "dir", defaultDir(), "data directory ($LOGSTORE_DIR, else ./logstore-data)")
	root.AddCommand(&cobra.Command{
		Use:   "demo",
		Short: "Write and read back an encrypted segment under a local key (no AWS account needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo.SegmentRoundTrip(cmd.Context(), dir, cmd.OutOrStdout())
		},
	})
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "logstore:", err)
		return 1
	}
	return 0
}

func defaultDir() string {
	if d := os.Getenv("LOGSTORE_DIR"); d != "" {
		return d
	}
	return "./logstore-data"
}
