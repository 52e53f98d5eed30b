// Package s3test starts real S3 protocol servers on 127.0.0.1 for tests:
// gofakes3 in-process (behind an optional fault injector) and moto_server as
// a child process stopped by PID. Nothing here imitates S3 itself.
package s3test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/logstore/logstore/objstore/s3store"
)

// Server is a running S3 endpoint.
type Server struct {
	URL    string  // http://127.0.0.1:PORT
	Faults *Faults // nil for moto_server
}

// Options returns s3store options for this server with static test
// credentials, few fast retries and a short timeout so faults surface fast.
func (s *Server) Options() *s3store.Options {
	return &s3store.Options{
		Endpoint:    s.URL,
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		MaxAttempts: 3,
		MaxBackoff:  50 * time.Millisecond,
		OpTimeout:   20 * time.Second,
	}
}

// Bucket opens (and creates) s3://name/prefix on the server.
func (s *Server) Bucket(t testing.TB, name, prefix string) *s3store.Bucket {
	t.Helper()
	b, err := s3store.Open(context.Background(), "s3://"+name+"/"+prefix, s.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CreateBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// StartGofakes3 serves gofakes3 (in memory) on 127.0.0.1 behind a fault
// injector, which injects nothing until told to. Stopped when t ends.
func StartGofakes3(t testing.TB) *Server {
	t.Helper()
	faker := gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog()))
	f := newFaults(faker.Server())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(f)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &Server{URL: srv.URL, Faults: f}
}

// StartMoto runs moto_server on a free port of 127.0.0.1 and stops it (its
// whole process group) by PID when t ends. It skips t, saying why, where
// moto_server is not installed.
func StartMoto(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Skip("moto_server is not installed (pip install 'moto[server]'): skipping the test against a third-party server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pid, syscall.SIGTERM) // the shim and python
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-done
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return &Server{URL: url}
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not start on %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
