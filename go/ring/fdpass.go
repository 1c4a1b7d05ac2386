package ring

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// SendFd passes the ring's region fd to the peer of a Unix domain socket as
// SCM_RIGHTS ancillary data (LAYOUT §1). The peer opens it with RecvFd and
// OpenFd, which verifies the memfd seals.
func (r *Ring) SendFd(conn *net.UnixConn) error {
	if r.Fd() < 0 {
		return errors.New("alloy: ring has no file descriptor")
	}
	// One data byte: a zero-length message may not carry ancillary data.
	if _, _, err := conn.WriteMsgUnix([]byte{0}, unix.UnixRights(r.Fd()), nil); err != nil {
		return fmt.Errorf("alloy: send fd: %w", err)
	}
	return nil
}

// RecvFd receives one fd sent with SendFd. The caller owns it (it is
// close-on-exec); pass it to OpenFd and then close it.
func RecvFd(conn *net.UnixConn) (int, error) {
	if err := platformOK(); err != nil {
		return -1, err
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return -1, fmt.Errorf("alloy: receive fd: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, fmt.Errorf("alloy: receive fd: %w", err)
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil || len(fds) == 0 {
			continue
		}
		for _, extra := range fds[1:] {
			unix.Close(extra)
		}
		unix.CloseOnExec(fds[0])
		return fds[0], nil
	}
	return -1, errors.New("alloy: receive fd: message carried no file descriptor")
}
