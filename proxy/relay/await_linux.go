package relay

import (
	"errors"
	"net"
	"syscall"
)

// awaitReadable returns when c has data to read or has ended, without reading it, so that an idle stream holds no
// buffer while it waits. It returns an error only if c is closed or cannot be waited on.
func awaitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil // Read will wait
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN) // data, end of stream, or an error Read will report
	})
}
