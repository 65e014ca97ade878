package serving

import (
	"log/slog"
	"net"
	"sync"
)

// ConnLimits bounds the connections a server accepts: each costs its
// goroutines and its buffers (see RELIABILITY.md for the arithmetic),
// and grpc-go accepts any number.
type ConnLimits struct {
	// PerAddress bounds the connections open at once from one remote IP
	// address. Default 16.
	PerAddress int
	// Total bounds the connections open at once. Default 64.
	Total int
}

func (l ConnLimits) withDefaults() ConnLimits {
	if l.PerAddress == 0 {
		l.PerAddress = 16
	}
	if l.Total == 0 {
		l.Total = 64
	}
	return l
}

// LimitListener returns inner with l's limits: a connection past either
// is closed as soon as it is accepted, before any byte of it is read, and
// logged with the limit it hit. The client sees the connection fail
// (Unavailable) and may try again later.
func LimitListener(inner net.Listener, l ConnLimits, log *slog.Logger) net.Listener {
	return &limitListener{Listener: inner, limits: l.withDefaults(), log: log, open: make(map[string]int)}
}

type limitListener struct {
	net.Listener
	limits ConnLimits
	log    *slog.Logger

	mu    sync.Mutex
	open  map[string]int // remote IP -> connections open
	total int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteIP(c)
		l.mu.Lock()
		fromAddr, total := l.open[addr], l.total
		refuse := fromAddr >= l.limits.PerAddress || total >= l.limits.Total
		if !refuse {
			l.open[addr]++
			l.total++
		}
		l.mu.Unlock()
		if refuse {
			l.log.Warn("refused a connection: too many open",
				"from", addr, "open_from_address", fromAddr, "limit_per_address", l.limits.PerAddress,
				"open", total, "limit", l.limits.Total)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: func() { l.release(addr) }}, nil
	}
}

func (l *limitListener) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[addr]--; l.open[addr] == 0 {
		delete(l.open, addr)
	}
	l.total--
}

func remoteIP(c net.Conn) string {
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// countedConn gives its slot back once, when it is first closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
