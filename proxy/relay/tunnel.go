package relay

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel is one relayed event stream: the client's connection, taken over, and the upstream connection it comes from.
type tunnel struct {
	rl       *Relay
	client   net.Conn
	upstream net.Conn
	left     int64        // body bytes still to send when the upstream gave a length; -1: until it closes
	sent     atomic.Int64 // bytes sent to the client after the head, framing included
	ended    func(sent int64)
	once     sync.Once
}

// pump copies the upstream's bytes to the client as they arrive, holding a buffer only while there is data to copy,
// until either side ends.
func (t *tunnel) pump() {
	defer t.close()
	for t.left != 0 {
		if err := awaitReadable(t.upstream); err != nil {
			return
		}
		buf := t.rl.buffers.Get()
		p := buf
		if t.left > 0 && int64(len(p)) > t.left {
			p = p[:t.left]
		}
		n, err := t.upstream.Read(p)
		if n > 0 {
			if t.left > 0 {
				t.left -= int64(n)
			}
			t.client.SetWriteDeadline(time.Now().Add(t.rl.o.WriteTimeout)) // a client that stops reading ends its stream
			if _, werr := t.client.Write(p[:n]); werr != nil {
				t.rl.buffers.Put(buf)
				return
			}
			t.sent.Add(int64(n))
		}
		t.rl.buffers.Put(buf)
		if err != nil {
			return
		}
	}
}

// watch ends the tunnel when the client closes its connection, or sends anything: the answer said the connection
// closes after it.
func (t *tunnel) watch() {
	var b [1]byte
	t.client.Read(b[:])
	t.close()
}

// close ends the stream once: both connections are closed and OnStream's end function is called.
func (t *tunnel) close() {
	t.once.Do(func() {
		t.client.Close()
		t.upstream.Close()
		t.rl.streams.remove(t)
		t.ended(t.sent.Load())
	})
}

// streamSet is the open tunnels, which EndStreams closes, and the count of requests that may still open one.
type streamSet struct {
	mu      sync.Mutex
	m       map[*tunnel]struct{}
	pending int  // requests between their start and their end or tunnel
	closed  bool // EndStreams closed the tunnels: any later one is refused
}

func (s *streamSet) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending++
}

func (s *streamSet) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
}

// add records t, unless the set is closed.
func (s *streamSet) add(t *tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = make(map[*tunnel]struct{})
	}
	s.m[t] = struct{}{}
	return true
}

func (s *streamSet) remove(t *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, t)
}

// busy reports whether a tunnel is open or a request may still open one.
func (s *streamSet) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m) > 0 || s.pending > 0
}

func (s *streamSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// closeAll refuses new tunnels and returns the open ones.
func (s *streamSet) closeAll() []*tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	out := make([]*tunnel, 0, len(s.m))
	for t := range s.m {
		out = append(out, t)
	}
	return out
}
