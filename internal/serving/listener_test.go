package serving

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	log := &syncBuffer{}
	l := LimitListener(inner, ConnLimits{PerAddress: 2, Total: 3}, slog.New(slog.NewTextHandler(log, nil)))
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := inner.Addr().(*net.TCPAddr)
	// dial connects from the loopback address from and reports the
	// server's side of the connection, or nil when the server closed it
	// unread.
	dial := func(from string) (client, server net.Conn) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		client, err := d.Dial("tcp", addr.String())
		if err != nil {
			t.Skipf("cannot dial from %s here (%v): the test needs the whole 127.0.0.0/8 on loopback, as Linux has", from, err)
		}
		t.Cleanup(func() { client.Close() })
		refused := make(chan error, 1)
		go func() {
			_, err := client.Read(make([]byte, 1))
			refused <- err
		}()
		select {
		case c := <-accepted:
			t.Cleanup(func() { c.Close() })
			return client, c
		case err := <-refused:
			require.True(t, errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset"), "reading a refused connection: %v", err)
			return client, nil
		case <-time.After(5 * time.Second):
			t.Fatalf("a connection from %s was neither accepted nor closed within 5s", from)
			return nil, nil
		}
	}
	_, a1 := dial("127.0.0.1")
	_, a2 := dial("127.0.0.1")
	require.NotNil(t, a1, "the 1st connection from 127.0.0.1, limit 2 per address")
	require.NotNil(t, a2, "the 2nd connection from 127.0.0.1, limit 2 per address")
	_, a3 := dial("127.0.0.1")
	require.Nil(t, a3, "the 3rd connection from 127.0.0.1, one past the limit of 2 per address, want it closed unread")
	require.Contains(t, log.String(), "limit_per_address=2", "the log of the refused connection")
	_, b1 := dial("127.0.0.2")
	require.NotNil(t, b1, "a connection from 127.0.0.2: 3 open of 3 in all")
	_, b2 := dial("127.0.0.2")
	require.Nil(t, b2, "a 4th connection in all, one past the total of 3, want it closed unread")
	// Closing one gives its slot back, once however often it is closed.
	a1.Close()
	a1.Close()
	_, a4 := dial("127.0.0.1")
	require.NotNil(t, a4, "a connection from 127.0.0.1 after one of its two closed")
	_, a5 := dial("127.0.0.1")
	require.Nil(t, a5, "a connection from 127.0.0.1 with two open again")
}

// syncBuffer is a bytes.Buffer that the listener's goroutine may log to
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
