package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/bench"
)

func (a *app) benchCmd() *cobra.Command {
	var records int
	var format string
	cmd := &cobra.Command{
		Use:   "bench [--records N] [--format table|json]",
		Short: "Measure the encrypt/decrypt hot path beside plaintext, the compression+AES floor and the per-record designs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usageError{fmt.Errorf("--format must be table or json, not %q", format)}
			}
			if records < 100 {
				return usageError{fmt.Errorf("--records must be at least 100")}
			}
			rep, err := bench.Run(cmd.Context(), bench.Options{Records: records})
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteTable(a.stdout)
		},
	}
	cmd.Flags().IntVar(&records, "records", 20_000, "records per append measurement")
	cmd.Flags().StringVarP(&format, "format", "o", "table", "table or json")
	return cmd
}
