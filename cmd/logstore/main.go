// Command logstore is the operator's CLI for a logstore data directory. It
// only parses flags and prints; the logic lives in the packages.
//
// Exit codes: 0 ok, 1 error, 2 usage, 3 key unavailable or revoked.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/awskms"
	"github.com/logstore/logstore/query"
)

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitKey   = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// app carries the global flags.
type app struct {
	dir    string
	bucket string // --bucket s3://NAME/PREFIX ("": local only)
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// open opens an existing data directory for writing and warns, on stderr,
// about whatever Open refused or could not authenticate: a damaged tenant
// or segment is reported by every command, never silently left out of an
// answer. Only commands that store data (openOrCreate) create a store: a
// mistyped --dir is an error, not a new empty store answering nothing.
func (a *app) open() (*engine.DB, error) { return a.openWith(nil) }

// openOrCreate is open for the commands that store data (ingest, keys
// link): the directory is created when missing.
func (a *app) openOrCreate() (*engine.DB, error) { return a.openWithCreate(nil, true) }

func (a *app) openWith(o *engine.Options) (*engine.DB, error) { return a.openWithCreate(o, false) }

func (a *app) openWithCreate(o *engine.Options, create bool) (*engine.DB, error) {
	// A stateless reader of a bucket needs no local store (only its keys,
	// for local:// keys).
	if !create && !(a.bucket != "" && o != nil && o.ReadOnly) {
		if err := a.requireStore(); err != nil {
			return nil, err
		}
	}
	var opts engine.Options
	if o != nil {
		opts = *o
	}
	// The CLI is the composition root: it adds AWS KMS (the standard AWS
	// configuration chain) beside the engine's built-in local provider, and
	// the S3 bucket of --bucket.
	opts.KMS = []keys.Provider{awskms.New(awskms.Options{})}
	if err := a.withBucket(context.Background(), &opts); err != nil {
		return nil, err
	}
	db, err := engine.Open(a.dir, &opts)
	if err != nil {
		return nil, err
	}
	rep := db.Recovery()
	for _, d := range rep.Damaged {
		fmt.Fprintln(a.stderr, "logstore: warning: damaged:", d)
	}
	for _, u := range rep.Unverified {
		fmt.Fprintln(a.stderr, "logstore: warning: not authenticated:", u)
	}
	if n := rep.ErasesRolledBack; n > 0 {
		fmt.Fprintf(a.stderr, "logstore: warning: %d erase(s) cut short by a crash were undone: run `logstore erase` again\n", n)
	}
	return db, nil
}

// openForReading opens the data directory for a command that only reads
// (query, show), always read-only (engine Options.ReadOnly): it never
// creates a store, never takes the lock (an ingest or an embedding backend
// starting meanwhile is not refused), works on a read-only copy, and
// answers with what was acknowledged when it started. Its key uses (the
// manifest keys, show's DEKs) are not recorded in the store's audit trail,
// whose single writer is the process that holds the store; a KMS logs them
// on its side.
func (a *app) openForReading() (*engine.DB, error) {
	return a.openWith(&engine.Options{ReadOnly: true})
}

// requireStore refuses a --dir that names no directory.
func (a *app) requireStore() error {
	st, err := os.Stat(a.dir)
	switch {
	case err != nil:
		return fmt.Errorf("%w: no logstore data directory at %s (%v); check --dir or $LOGSTORE_DIR", engine.ErrNotFound, a.dir, err)
	case !st.IsDir():
		return fmt.Errorf("%w: %s is not a directory; check --dir or $LOGSTORE_DIR", engine.ErrNotFound, a.dir)
	}
	return nil
}

// openTenant opens the store with open and returns it with the handle of
// tenant name, which must exist (existingTenant); on any error the store is
// closed again. The caller closes it (closeDB).
func (a *app) openTenant(ctx context.Context, name string, open func() (*engine.DB, error)) (*engine.DB, *engine.Tenant, error) {
	db, err := open()
	if err != nil {
		return nil, nil, err
	}
	tn, err := a.existingTenant(ctx, db, name)
	if err != nil {
		_ = db.Close() // the command failed already; nothing was written
		return nil, nil, err
	}
	return db, tn, nil
}

// existingTenant returns the handle of tenant name, which the store must
// hold: a mistyped name is an error listing the tenants that exist, never
// an empty answer.
func (a *app) existingTenant(ctx context.Context, db *engine.DB, name string) (*engine.Tenant, error) {
	if err := requireTenant(name); err != nil {
		return nil, err
	}
	names, err := db.Admin().Tenants(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(names, name) {
		list := "none yet"
		if len(names) > 0 {
			list = strings.Join(names, ", ")
		}
		return nil, usageError{fmt.Errorf("%w: no tenant %q in %s (tenants: %s)", engine.ErrNotFound, name, a.dir, list)}
	}
	return db.Tenant(name)
}

// closeDB closes db and reports a failure to do so (sealing segments,
// flushing the index) unless the command already failed.
func closeDB(db *engine.DB, err *error) {
	if cerr := db.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "logstore",
		Short:         "Encrypted storage for API-gateway debugger logs",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(stdin)
	root.PersistentFlags().StringVar(&a.dir, "dir", defaultDir(), "data directory ($LOGSTORE_DIR, else ./logstore-data)")
	root.PersistentFlags().StringVar(&a.bucket, "bucket", defaultBucket(),
		"S3 bucket for sealed segments, s3://NAME/PREFIX ($LOGSTORE_BUCKET; default none: local only). Reading commands then read the bucket")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if a.dir == "" {
			return usageError{errors.New("--dir is empty: name the data directory (without --dir: $LOGSTORE_DIR, else ./logstore-data)")}
		}
		return nil
	}
	root.AddCommand(a.versionCmd(), a.demoCmd(), a.ingestCmd(), a.queryCmd(), a.showCmd(), a.exportCmd(), a.keysCmd(), a.segmentsCmd(), a.auditCmd(), a.tenantsCmd(), a.redactionCmd(), a.eraseCmd(), a.benchCmd())
	strictArgs(root)
	a.conventions(root)
	root.SetArgs(args)
	// SIGINT/SIGTERM cancel the command's context: an ingest stops between
	// batches and says what it stored; every command closes the store.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// Engine errors name their package ("logstore/query: ..."): no second prefix.
	if msg := err.Error(); strings.HasPrefix(msg, "logstore/") {
		fmt.Fprintln(stderr, msg)
	} else {
		fmt.Fprintln(stderr, "logstore:", msg)
	}
	return exitCode(err)
}

func exitCode(err error) int {
	var u usageError
	switch {
	case errors.Is(err, keys.ErrBadURI):
		return exitUsage // before the key checks: an unknown scheme is a typo, not a revocation
	case errors.Is(err, keys.ErrKeyUnusable), keys.IsRetryable(err), errors.Is(err, engine.ErrNoKey):
		return exitKey
	case errors.As(err, &u), errors.Is(err, query.ErrSyntax), errors.Is(err, query.ErrSealedField),
		errors.Is(err, query.ErrUnknownField), errors.Is(err, query.ErrBadValue), errors.Is(err, query.ErrBadCursor),
		errors.Is(err, engine.ErrInvalidTenant), errors.Is(err, ingest.ErrUsage):
		return exitUsage
	}
	return exitError
}

// strictArgs makes every way of calling a command wrongly a usageError
// (exit 2) by construction, not by matching cobra's messages: argument
// counts (each command's Args), and unknown or missing subcommands of the
// command groups (which cobra would otherwise answer with help, exit 0).
func strictArgs(c *cobra.Command) {
	switch {
	case c.HasSubCommands() && !c.Runnable():
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				cmd.SetOut(cmd.ErrOrStderr())
				_ = cmd.Help()
				return usageError{fmt.Errorf("%s needs a command", cmd.CommandPath())}
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			cmd.SuggestionsMinimumDistance = 2
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			return usageError{errors.New(msg + " (see --help)")}
		}
	case c.Args != nil:
		orig := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := orig(cmd, args); err != nil {
				return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
}

func defaultDir() string {
	if d := os.Getenv("LOGSTORE_DIR"); d != "" {
		return d
	}
	return "./logstore-data"
}

func requireTenant(t string) error {
	if t == "" {
		return usageError{errors.New("--tenant is required")}
	}
	return engine.ValidateTenant(t)
}

// conventions applies what every command shares: usage lines as written in
// Use (which lists the flags: no second "[flags]"), --output as the long
// alias of an output --format (-o), and shell completion of --tenant with
// the store's tenants (`logstore completion bash|zsh|fish|powershell`).
func (a *app) conventions(c *cobra.Command) {
	c.DisableFlagsInUseLine = true
	if c.Flags().Lookup("tenant") != nil {
		_ = c.RegisterFlagCompletionFunc("tenant", a.completeTenants)
	}
	if f := c.Flags().Lookup("format"); f != nil && f.Shorthand == "o" {
		c.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
			if name == "output" {
				name = "format"
			}
			return pflag.NormalizedName(name)
		})
	}
	for _, sub := range c.Commands() {
		a.conventions(sub)
	}
}

// completeTenants lists the tenants of --dir for shell completion, opening
// the store read-only (never creating or locking it); nothing when it
// cannot be read.
func (a *app) completeTenants(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if a.requireStore() != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	db, err := engine.Open(a.dir, &engine.Options{ReadOnly: true})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer db.Close()
	names, _ := db.Admin().Tenants(cmd.Context())
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
