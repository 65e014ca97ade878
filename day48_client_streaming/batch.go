package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/quota"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// BatchConfig holds the batch server's limits. The zero value of a field
// means its default; tests shrink the limits to reach them quickly.
type BatchConfig struct {
	// MaxItemsPerStream is the most items one ProcessBatch stream may
	// send. It also bounds the item ids a stream remembers to spot
	// duplicates, and the answer, which carries an outcome per item.
	// Default 2000: at maxOutcomeBytes an outcome, the answer to a full
	// stream stays under 1 MiB.
	MaxItemsPerStream int
	// MaxPayloadBytes is the largest payload one item may carry.
	// Default 64 KiB.
	MaxPayloadBytes int
	// ItemsPerSecond is the pace at which a stream's items are received.
	// Default 1000.
	ItemsPerSecond float64
	// Burst is how many items a stream may send at once before the pace
	// applies. Default 100.
	Burst int
	// Now is the clock token expiry is checked against. Default time.Now.
	Now func() time.Time
}

const (
	defaultMaxItemsPerStream = 2_000
	defaultMaxPayloadBytes   = 64 << 10
	defaultItemsPerSecond    = 1000
	defaultBurst             = 100
	// maxItemIDBytes and maxKeyBytes bound what a stream remembers and
	// stores per item, whatever the transport's message limit.
	maxItemIDBytes = 128
	maxKeyBytes    = 256
	// maxOutcomeBytes bounds one outcome, encoded: its item_id (outcomeID:
	// at most 131 bytes with its framing), its code and its message. A
	// message quotes an id or a key with quoteShort, at most
	// maxQuotedBytes, since a key of 256 control bytes quoted whole by %q
	// is 1,026 bytes.
	maxOutcomeBytes = 512
	maxQuotedBytes  = 64
)

// outcomeID is the item_id an outcome carries: the item's own, cut to
// its first maxItemIDBytes bytes (at a character boundary) when it is
// longer, as a refused over-long id is. Echoing it whole would let an
// item make the answer as large as the receive limit.
func outcomeID(id string) string {
	if len(id) <= maxItemIDBytes {
		return id
	}
	n := maxItemIDBytes
	for n > 0 && !utf8.RuneStart(id[n]) {
		n--
	}
	return id[:n]
}

// quoteShort quotes s as %q does, cut to at most maxQuotedBytes bytes, an
// ellipsis marking the cut: a message can name an id or a key without
// growing with it. %.40q would not do, since it counts characters, and
// one character can take ten bytes quoted (\U000f0000).
func quoteShort(s string) string {
	q := strconv.Quote(s)
	if len(q) <= maxQuotedBytes {
		return q
	}
	cut := 0
	for i := range s {
		if len(strconv.Quote(s[:i]))+len("…") > maxQuotedBytes {
			break
		}
		cut = i
	}
	q = strconv.Quote(s[:cut])
	return q[:len(q)-1] + `…"`
}

func (c BatchConfig) withDefaults() BatchConfig {
	if c.MaxItemsPerStream <= 0 {
		c.MaxItemsPerStream = defaultMaxItemsPerStream
	}
	if c.MaxPayloadBytes <= 0 {
		c.MaxPayloadBytes = defaultMaxPayloadBytes
	}
	if c.ItemsPerSecond <= 0 {
		c.ItemsPerSecond = defaultItemsPerSecond
	}
	if c.Burst <= 0 {
		c.Burst = defaultBurst
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// BatchServer implements pb.BatchServiceServer. Its handler is in
// main.go; this file holds the parts the lesson gives you. It needs
// AuthInterceptor in front of it: the caller's identity comes from there.
type BatchServer struct {
	pb.UnimplementedBatchServiceServer

	cfg   BatchConfig
	store *keyStore
	// newPacer returns what a stream of user waits on before each Recv.
	// The pace is the user's, not the stream's: every stream of one user
	// shares it, and it outlives them until it has refilled, so parallel
	// streams or reconnecting buy no more items. Tests replace it to
	// watch or hold the pace.
	newPacer func(user string) pacer
}

// pacer is what a stream waits on before it receives its next item.
type pacer interface {
	Wait(ctx context.Context) error
}

// userPacer paces one user with the server's per-user limits.
type userPacer struct {
	limits *quota.Limiters
	user   string
}

func (p userPacer) Wait(ctx context.Context) error { return p.limits.Wait(ctx, p.user) }

// NewBatchServer returns a server with an empty key store.
func NewBatchServer(cfg BatchConfig) *BatchServer {
	cfg = cfg.withDefaults()
	// The pace runs on real time: Wait sleeps for real.
	limits := quota.New(cfg.ItemsPerSecond, cfg.Burst, nil)
	return &BatchServer{
		cfg:   cfg,
		store: &keyStore{values: make(map[string][]byte)},
		newPacer: func(user string) pacer {
			return userPacer{limits: limits, user: user}
		},
	}
}

// keyStore is the in-memory key-value store batches act on. Keys are
// "<owner>/<name>".
type keyStore struct {
	mu     sync.Mutex
	values map[string][]byte
}

// put stores a copy of payload under key.
func (k *keyStore) put(key string, payload []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.values[key] = append([]byte{}, payload...)
}

// delete removes key and reports whether it was there.
func (k *keyStore) delete(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.values[key]
	delete(k.values, key)
	return ok
}

// purgeOwner removes every key of owner and returns how many there were.
func (k *keyStore) purgeOwner(owner string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for key := range k.values {
		if o, _ := keyOwner(key); o == owner {
			delete(k.values, key)
			n++
		}
	}
	return n
}

// get returns a copy of the payload stored under key.
func (k *keyStore) get(key string) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.values[key]
	return append([]byte{}, v...), ok
}

// keyOwner returns the owner part of a "<owner>/<name>" key. Both parts
// must be non-empty; the name may contain further slashes.
func keyOwner(key string) (string, error) {
	owner, name, found := strings.Cut(key, "/")
	switch {
	case key == "":
		return "", fmt.Errorf("key is empty: want \"<owner>/<name>\"")
	case len(key) > maxKeyBytes:
		return "", fmt.Errorf("key is %d bytes long, limit %d", len(key), maxKeyBytes)
	case !found || owner == "" || name == "":
		return "", fmt.Errorf("key %s is malformed: want \"<owner>/<name>\"", quoteShort(key))
	}
	return owner, nil
}
