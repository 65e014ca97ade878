package main

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// CollectionConfig holds the data collection server's limits. The zero
// value of a field means its default.
type CollectionConfig struct {
	// BatchSize is how many valid points are saved together. Default 100.
	BatchSize int
	// MaxPointsPerStream ends a stream that sends more. Default 1,000,000.
	MaxPointsPerStream int64
	// MaxErrorsReported bounds CollectionResult.errors. Default 20.
	MaxErrorsReported int
	// MaxFutureSkew is how far ahead of the server's clock a timestamp may
	// be. Default 5 minutes.
	MaxFutureSkew time.Duration
	// MaxSources bounds the sources aggregated. Default 10,000.
	MaxSources int

	// MinLevel drops log entries below it, counted as filtered. Default INFO.
	MinLevel pb.LogLevel
	// LogBufferSize is how many entries are indexed together. Default 1000.
	LogBufferSize int
	// FlushInterval indexes a partly filled buffer this often. Default 1s.
	FlushInterval time.Duration
	// MaxLogMessageBytes bounds a log message. Default 8 KiB.
	MaxLogMessageBytes int
	// MaxIndexedLogs bounds the index; the oldest entries go first.
	// Default 100,000.
	MaxIndexedLogs int

	// Store saves batches of points. Default: in memory.
	Store PointStore
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// NewTicker starts the flush ticker. Default time.NewTicker; tests
	// pass a ticker they fire by hand.
	NewTicker func(d time.Duration) Ticker
}

// Ticker is the part of *time.Ticker the log flusher uses.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

type realTicker struct{ *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.Ticker.C }

const (
	// Point limits.
	maxMetricsPerPoint = 64
	maxTagsPerPoint    = 32
	maxTagBytes        = 128
	maxMetricNameBytes = 64
	// Log limits.
	maxApplicationBytes   = 64
	maxLogFields          = 32
	maxLogFieldKeyBytes   = 64
	maxLogFieldValueBytes = 1024
	// searchLimit is the most entries SearchLogs returns.
	searchLimit = 100
	// searchMaxBytes bounds a SearchLogs answer, encoded, well under the
	// 4 MiB message limit: 100 entries at the largest an entry may be
	// would not fit, so the answer stops early and says so.
	searchMaxBytes = 1 << 20
)

// sourcePattern is what a source name may look like: a lower-case
// host-like name of 1 to 64 characters.
var sourcePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (c CollectionConfig) withDefaults() CollectionConfig {
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.MaxPointsPerStream == 0 {
		c.MaxPointsPerStream = 1_000_000
	}
	if c.MaxErrorsReported == 0 {
		c.MaxErrorsReported = 20
	}
	if c.MaxFutureSkew == 0 {
		c.MaxFutureSkew = 5 * time.Minute
	}
	if c.MaxSources == 0 {
		c.MaxSources = 10_000
	}
	if c.MinLevel == pb.LogLevel_LOG_LEVEL_UNSPECIFIED {
		c.MinLevel = pb.LogLevel_LOG_LEVEL_INFO
	}
	if c.LogBufferSize == 0 {
		c.LogBufferSize = 1000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.MaxLogMessageBytes == 0 {
		c.MaxLogMessageBytes = 8 << 10
	}
	if c.MaxIndexedLogs == 0 {
		c.MaxIndexedLogs = 100_000
	}
	if c.Store == nil {
		c.Store = &MemoryPointStore{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewTicker == nil {
		c.NewTicker = func(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }
	}
	return c
}

// DataCollectionServer implements pb.DataCollectionServiceServer. The
// streaming handlers are in main.go; this file holds the storage, the
// aggregates, the log index and the unary queries.
type DataCollectionServer struct {
	pb.UnimplementedDataCollectionServiceServer

	cfg        CollectionConfig
	aggregates *aggregates
	logs       *logIndex
}

// NewDataCollectionServer returns a server with cfg's limits.
func NewDataCollectionServer(cfg CollectionConfig) *DataCollectionServer {
	cfg = cfg.withDefaults()
	return &DataCollectionServer{
		cfg:        cfg,
		aggregates: &aggregates{maxSources: cfg.MaxSources, bySource: make(map[string]map[string]*MetricStats)},
		logs:       newLogIndex(cfg.MaxIndexedLogs),
	}
}

// PointStore saves batches of valid points. A batch is saved whole or
// not at all.
type PointStore interface {
	SaveBatch(ctx context.Context, points []*pb.DataPoint) error
}

// MemoryPointStore is the default PointStore. It counts what it saved and
// keeps the most recent points only, so it stays bounded.
type MemoryPointStore struct {
	mu      sync.Mutex
	saved   int64
	batches int64
	recent  []*pb.DataPoint
}

const memoryStoreKeeps = 10_000

// SaveBatch implements PointStore. It copies nothing: callers must not
// change points after saving them.
func (m *MemoryPointStore) SaveBatch(_ context.Context, points []*pb.DataPoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved += int64(len(points))
	m.batches++
	m.recent = append(m.recent, points...)
	if over := len(m.recent) - memoryStoreKeeps; over > 0 {
		m.recent = slices.Delete(m.recent, 0, over)
	}
	return nil
}

// Saved returns how many points and batches were saved.
func (m *MemoryPointStore) Saved() (points, batches int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saved, m.batches
}

// MetricStats aggregates the values of one metric of one source.
type MetricStats struct {
	Count    int64
	Min, Max float64
	Sum      float64
	Last     float64
}

// aggregates keeps MetricStats per source and metric.
type aggregates struct {
	mu         sync.Mutex
	maxSources int
	bySource   map[string]map[string]*MetricStats
}

// add folds a saved batch into the aggregates. A source first seen after
// maxSources others is saved but not aggregated, which keeps memory
// bounded whatever names clients invent.
func (a *aggregates) add(points []*pb.DataPoint) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range points {
		metrics, ok := a.bySource[p.GetSource()]
		if !ok {
			if len(a.bySource) >= a.maxSources {
				continue
			}
			metrics = make(map[string]*MetricStats)
			a.bySource[p.GetSource()] = metrics
		}
		for name, v := range p.GetMetrics() {
			st, ok := metrics[name]
			if !ok {
				st = &MetricStats{Min: v, Max: v}
				metrics[name] = st
			}
			st.Count++
			st.Min, st.Max = min(st.Min, v), max(st.Max, v)
			st.Sum += v
			st.Last = v
		}
	}
}

// GetMetricsSummary returns the aggregates of one source.
func (s *DataCollectionServer) GetMetricsSummary(_ context.Context, req *pb.GetMetricsSummaryRequest) (*pb.GetMetricsSummaryResponse, error) {
	source := req.GetSource()
	if !sourcePattern.MatchString(source) {
		return nil, status.Errorf(codes.InvalidArgument, "source %q is invalid: want %s", source, sourcePattern)
	}
	a := s.aggregates
	a.mu.Lock()
	defer a.mu.Unlock()
	metrics, ok := a.bySource[source]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no data points from source %q", source)
	}
	resp := &pb.GetMetricsSummaryResponse{Source: source}
	for name, st := range metrics {
		resp.Metrics = append(resp.Metrics, &pb.MetricSummary{
			Name: name, Count: st.Count, Min: st.Min, Max: st.Max, Mean: st.Sum / float64(st.Count), Last: st.Last,
		})
	}
	slices.SortFunc(resp.Metrics, func(x, y *pb.MetricSummary) int { return strings.Compare(x.Name, y.Name) })
	return resp, nil
}

// sensitiveKeyWords mark a log field whose value must never be stored or
// printed. A field is sensitive when its name, folded to lower case with
// every character that is not a letter or a digit removed, contains one
// of them: "X-Api-Key", "api.key" and "API KEY" all become "apikey".
// Some words ("auth", "pwd") also match harmless names such as "author";
// redacting one of those by mistake costs far less than storing a secret.
var sensitiveKeyWords = []string{
	"password", "passwd", "pwd", "passphrase", "secret", "token", "auth",
	"bearer", "jwt", "apikey", "accesskey", "credential", "privatekey",
	"cookie", "session", "signature", "creditcard", "cardnumber",
}

const redacted = "[REDACTED]"

// redactEntry returns e with every secret replaced by "[REDACTED]": the
// value of each sensitive field, and, in the message and the other field
// values, the value of each "key=value" or "key: value" whose key is
// sensitive and each bearer credential ("Bearer abc.def"). When something
// needs redacting it returns a copy and leaves e untouched; otherwise it
// returns e itself.
func redactEntry(e *pb.LogEntry) *pb.LogEntry {
	message := redactText(e.GetMessage())
	var fields map[string]string
	for name, value := range e.GetFields() {
		clean := redacted
		if !isSensitiveKey(name) {
			clean = redactText(value)
		}
		if clean != value {
			if fields == nil {
				fields = maps.Clone(e.GetFields())
			}
			fields[name] = clean
		}
	}
	if fields == nil && message == e.GetMessage() {
		return e
	}
	if fields == nil {
		fields = e.GetFields()
	}
	return &pb.LogEntry{
		Application: e.GetApplication(),
		Level:       e.GetLevel(),
		Timestamp:   e.GetTimestamp(),
		Message:     message,
		Fields:      fields,
	}
}

// isSensitiveKey reports whether a field or key named name holds a secret.
func isSensitiveKey(name string) bool {
	key := strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return unicode.ToLower(r)
		}
		return -1
	}, name)
	return slices.ContainsFunc(sensitiveKeyWords, func(w string) bool { return strings.Contains(key, w) })
}

var (
	// keyInText finds the "key=" or "key:" of a key-value pair in free
	// text. It does not take the value, so that a pair inside another
	// one's value ("next=/cb?token=abc") is found too.
	keyInText = regexp.MustCompile(`([\pL\pN_.-]+)\s*[:=]\s*`)
	// bearerInText finds an HTTP bearer or basic credential.
	bearerInText = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`)
)

// redactText replaces the secrets that free text carries: the value of
// every pair whose key is sensitive, and bearer credentials.
//
// Most log text holds no secret, so each pattern runs only when the text
// has a character its every match needs: a regular expression over every
// message and field value was a quarter of the log handler's time.
func redactText(text string) string {
	if strings.ContainsAny(text, "bB") { // "bearer" and "basic", in any case
		text = bearerInText.ReplaceAllString(text, "$1 "+redacted)
	}
	if !strings.ContainsAny(text, ":=") {
		return text
	}
	var b strings.Builder
	done := 0
	for _, m := range keyInText.FindAllStringSubmatchIndex(text, -1) {
		if m[0] < done || !isSensitiveKey(text[m[2]:m[3]]) {
			continue
		}
		b.WriteString(text[done:m[1]])
		b.WriteString(redacted)
		done = valueEnd(text, m[1])
	}
	if done == 0 {
		return text
	}
	b.WriteString(text[done:])
	return b.String()
}

// valueEnd returns where the value that starts at start ends: after its
// closing quote, or at the next space or separator.
func valueEnd(text string, start int) int {
	if start < len(text) && (text[start] == '"' || text[start] == '\'') {
		if i := strings.IndexByte(text[start+1:], text[start]); i >= 0 {
			return start + 1 + i + 1
		}
		return len(text)
	}
	if i := strings.IndexAny(text[start:], " \t\n,;&\"'"); i >= 0 {
		return start + i
	}
	return len(text)
}

// logIndex keeps the most recent indexed entries, bounded, and answers
// searches over them. Every change closes the notify channel, so tests
// can wait for a flush without polling.
type logIndex struct {
	// beforeAdd, when a test sets it before the server serves, runs at
	// the start of every addBatch. The server never sets it.
	beforeAdd func()

	mu       sync.Mutex
	capacity int
	entries  []*pb.LogEntry // oldest first
	flushes  int
	notify   chan struct{}
}

func newLogIndex(capacity int) *logIndex {
	return &logIndex{capacity: capacity, notify: make(chan struct{})}
}

// addBatch indexes a flushed buffer. The entries must already be redacted.
func (x *logIndex) addBatch(entries []*pb.LogEntry) {
	if x.beforeAdd != nil {
		x.beforeAdd()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.entries = append(x.entries, entries...)
	if over := len(x.entries) - x.capacity; over > 0 {
		x.entries = slices.Delete(x.entries, 0, over)
	}
	x.flushes++
	close(x.notify)
	x.notify = make(chan struct{})
}

// stats returns how many entries are indexed, how many flushes happened,
// and a channel closed at the next change.
func (x *logIndex) stats() (entries, flushes int, changed <-chan struct{}) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.entries), x.flushes, x.notify
}

// SearchLogs finds indexed entries, newest first.
func (s *DataCollectionServer) SearchLogs(_ context.Context, req *pb.SearchLogsRequest) (*pb.SearchLogsResponse, error) {
	if _, ok := pb.LogLevel_name[int32(req.GetMinLevel())]; !ok {
		return nil, status.Errorf(codes.InvalidArgument, "min_level %d is not a known level", req.GetMinLevel())
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > searchLimit {
		limit = searchLimit
	}
	term := strings.ToLower(req.GetTerm())
	x := s.logs
	x.mu.Lock()
	defer x.mu.Unlock()
	resp := &pb.SearchLogsResponse{}
	bytes := 0
	for _, e := range slices.Backward(x.entries) {
		if e.GetLevel() < req.GetMinLevel() ||
			(req.GetApplication() != "" && e.GetApplication() != req.GetApplication()) ||
			(term != "" && !strings.Contains(strings.ToLower(e.GetMessage()), term)) {
			continue
		}
		resp.TotalMatches++
		if len(resp.Entries) == limit || resp.Truncated {
			continue
		}
		// Each entry costs its size, a tag and a length prefix of at
		// most 3 bytes (entries are far smaller than 2 MiB).
		size := proto.Size(e) + 4
		if bytes+size > searchMaxBytes {
			resp.Truncated = true
			continue
		}
		bytes += size
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}

// errorList collects per-item errors, keeping the first max of them and
// counting the rest.
type errorList struct {
	max     int
	kept    []string
	dropped int
}

func (l *errorList) add(format string, args ...any) {
	if len(l.kept) < l.max {
		l.kept = append(l.kept, fmt.Sprintf(format, args...))
		return
	}
	l.dropped++
}

// list returns the kept errors and, if any were dropped, "and K more".
func (l *errorList) list() []string {
	if l.dropped == 0 {
		return l.kept
	}
	return append(slices.Clip(l.kept), fmt.Sprintf("and %d more", l.dropped))
}
