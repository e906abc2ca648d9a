// Package redistest runs a real redis-server (the Debian package redis-server) for tests and benchmarks: on a free
// loopback port, in a temporary directory, without persistence, stopped and started again at will.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the server the package runs, looked up in PATH.
const Binary = "redis-server"

// ErrNotInstalled is returned by StartServer when Binary is not in PATH.
var ErrNotInstalled = errors.New(Binary + " is not installed (Debian package redis-server)")

// Server is a redis-server process on 127.0.0.1. Stop and Start may be called any number of times; the port stays the
// same, so a client keeps its address across a restart (and finds Redis empty, as after a crash without persistence).
type Server struct {
	// Addr is the server's host:port.
	Addr string
	// URL is Addr as a redis:// URL.
	URL string

	mu     sync.Mutex
	dir    string
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed once cmd has exited
}

// New starts a server for t and stops it when t ends. Without redis-server in PATH it skips t, unless the CI
// environment variable is set (as .ci/run sets it): there a missing server fails the test.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer(t.TempDir())
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skipf("%v: skipping; with CI set this fails instead", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartServer starts a server whose files (none are written but the log) go in dir. Stop it with Stop.
func StartServer(dir string) (*Server, error) {
	if _, err := exec.LookPath(Binary); err != nil {
		return nil, ErrNotInstalled
	}
	s := &Server{dir: dir}
	// A free port: listen on :0, note the port, close. Another process could take it in between; Start then fails
	// and a second port is tried.
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.Start(); err == nil {
			s.URL = "redis://" + s.Addr
			return s, nil
		}
	}
	return nil, err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the server again after Stop (StartServer has started it already) and returns once it answers PING.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(Binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", "redis.log", "--daemonize", "no")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(s.Addr)
		if err == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s on %s did not answer within 10s: %w (see %s/redis.log)", Binary, s.Addr, err, s.dir)
		}
		select {
		case <-exited:
			return fmt.Errorf("%s on %s exited at start (see %s/redis.log)", Binary, s.Addr, s.dir)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills the server, as a crash would, and waits until it has exited: its port refuses connections at once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pause stops the server's process (SIGSTOP) without closing its port: connections open and requests wait
// unanswered, as with a server that hangs. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// ping sends PING in the inline protocol and waits for +PONG, within a second.
func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
