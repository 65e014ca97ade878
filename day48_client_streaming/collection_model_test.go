package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// collectionModel is CollectDataPoints and its aggregates as a plain
// sequential model: the store's calls, which of them fail, and the
// statistics of every source and metric that was saved.
type collectionModel struct {
	batchSize, maxPoints, maxErrors, maxSources int
	failEvery                                   int // every failEvery-th SaveBatch call fails
	saves                                       int
	stats                                       map[string]map[string]*MetricStats
	sources                                     []string // aggregated, in the order first saved
}

// modelPoint is a point the model generates: valid, or with one fault.
type modelPoint struct {
	source string
	cpu    float64
	fault  string // "" when valid
}

func (p modelPoint) String() string {
	if p.fault != "" {
		return fmt.Sprintf("%s cpu=%v (%s)", p.source, p.cpu, p.fault)
	}
	return fmt.Sprintf("%s cpu=%v", p.source, p.cpu)
}

func (p modelPoint) proto() *pb.DataPoint {
	dp := &pb.DataPoint{Source: p.source, Timestamp: timestamppb.New(collectionNow.Add(-time.Minute)), Metrics: map[string]float64{"cpu": p.cpu}}
	switch p.fault {
	case "no timestamp":
		dp.Timestamp = nil
	case "no metrics":
		dp.Metrics = nil
	case "NaN":
		dp.Metrics["cpu"] = math.NaN()
	case "bad source":
		dp.Source = "Not A Source"
	}
	return dp
}

// stream applies one stream to the model and returns the result it must
// answer (nil when the stream must end with the code returned).
func (m *collectionModel) stream(points []modelPoint) (*pb.CollectionResult, []string, codes.Code) {
	var batch []modelPoint
	var errs []string // "point N" or "batch"
	var received, saved int64
	save := func() {
		if len(batch) == 0 {
			return
		}
		m.saves++
		if m.saves%m.failEvery == 0 {
			errs = append(errs, "batch")
		} else {
			saved += int64(len(batch))
			for _, p := range batch {
				m.aggregate(p)
			}
		}
		batch = nil
	}
	for i, p := range points {
		if i == m.maxPoints {
			save()
			return nil, nil, codes.ResourceExhausted
		}
		received++
		if p.fault != "" {
			errs = append(errs, fmt.Sprintf("point %d", i))
			continue
		}
		if batch = append(batch, p); len(batch) == m.batchSize {
			save()
		}
	}
	save()
	if len(errs) > m.maxErrors {
		errs = append(errs[:m.maxErrors], fmt.Sprintf("and %d more", len(errs)-m.maxErrors))
	}
	return &pb.CollectionResult{TotalProcessed: received, SuccessfulCount: saved, ErrorCount: received - saved}, errs, codes.OK
}

func (m *collectionModel) aggregate(p modelPoint) {
	metrics, ok := m.stats[p.source]
	if !ok {
		if len(m.stats) >= m.maxSources {
			return
		}
		metrics = map[string]*MetricStats{}
		m.stats[p.source] = metrics
		m.sources = append(m.sources, p.source)
	}
	st, ok := metrics["cpu"]
	if !ok {
		st = &MetricStats{Min: p.cpu, Max: p.cpu}
		metrics["cpu"] = st
	}
	st.Count++
	st.Min, st.Max, st.Sum, st.Last = min(st.Min, p.cpu), max(st.Max, p.cpu), st.Sum+p.cpu, p.cpu
}

// everyNthFails is a point store whose every n-th SaveBatch call fails.
type everyNthFails struct {
	n     int
	mu    sync.Mutex
	calls int
}

func (s *everyNthFails) SaveBatch(context.Context, []*pb.DataPoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls++; s.calls%s.n == 0 {
		return errors.New("disk full (injected by the test)")
	}
	return nil
}

// switchedCollection serves whichever collection server the current check
// of a property test uses.
type switchedCollection struct {
	pb.UnimplementedDataCollectionServiceServer
	cur atomic.Pointer[DataCollectionServer]
}

func (s *switchedCollection) CollectDataPoints(stream pb.DataCollectionService_CollectDataPointsServer) error {
	return s.cur.Load().CollectDataPoints(stream)
}

func (s *switchedCollection) GetMetricsSummary(ctx context.Context, req *pb.GetMetricsSummaryRequest) (*pb.GetMetricsSummaryResponse, error) {
	return s.cur.Load().GetMetricsSummary(ctx, req)
}

// testCollectionMatchesItsModel sends random streams of valid and invalid
// points, some past the point cap, to a server whose store fails every
// third batch, and compares every answer (counts and the error list,
// entry by entry) and every source's summary with the model after each
// stream. A failing sequence is shrunk to the shortest that still fails.
func testCollectionMatchesItsModel(t *testing.T) {
	const batchSize, maxPoints, maxErrors, maxSources, failEvery = 2, 5, 2, 2, 3
	switched := &switchedCollection{}
	srv := katatest.Start(t, func(g *grpc.Server) { pb.RegisterDataCollectionServiceServer(g, switched) })
	client := pb.NewDataCollectionServiceClient(srv.Conn)
	sources := []string{"web-1", "db-1", "cache-1"}

	rapid.Check(t, func(rt *rapid.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		clock := katatest.NewClock(collectionNow)
		switched.cur.Store(NewDataCollectionServer(CollectionConfig{BatchSize: batchSize, MaxPointsPerStream: maxPoints,
			MaxErrorsReported: maxErrors, MaxSources: maxSources, Store: &everyNthFails{n: failEvery}, Now: clock.Now}))
		model := &collectionModel{batchSize: batchSize, maxPoints: maxPoints, maxErrors: maxErrors, maxSources: maxSources,
			failEvery: failEvery, stats: map[string]map[string]*MetricStats{}}

		for step := range rapid.IntRange(1, 10).Draw(rt, "streams") {
			points := make([]modelPoint, rapid.IntRange(0, maxPoints+1).Draw(rt, "points"))
			var sent []*pb.DataPoint
			for i := range points {
				points[i] = modelPoint{
					source: rapid.SampledFrom(sources).Draw(rt, "source"),
					cpu:    float64(rapid.IntRange(-3, 3).Draw(rt, "cpu")),
					fault:  rapid.SampledFrom([]string{"", "", "", "no timestamp", "no metrics", "NaN", "bad source"}).Draw(rt, "fault"),
				}
				sent = append(sent, points[i].proto())
			}
			what := fmt.Sprintf("stream %d: CollectDataPoints(%v)", step, points)
			got, err := sendPoints(ctx, client, sent...)
			want, wantErrs, wantCode := model.stream(points)
			if status.Code(err) != wantCode {
				rt.Fatalf("%s = %v, want code %v", what, err, wantCode)
			}
			if want != nil {
				if got.GetTotalProcessed() != want.TotalProcessed || got.GetSuccessfulCount() != want.SuccessfulCount || got.GetErrorCount() != want.ErrorCount {
					rt.Fatalf("%s counts total_processed=%d successful_count=%d error_count=%d, want %d, %d, %d", what,
						got.GetTotalProcessed(), got.GetSuccessfulCount(), got.GetErrorCount(), want.TotalProcessed, want.SuccessfulCount, want.ErrorCount)
				}
				if !errorsMatch(got.GetErrors(), wantErrs) {
					rt.Fatalf("%s errors = %q, want %d entries in order: %q (\"point N\" starts its entry; \"batch\" is a failed batch's)", what, got.GetErrors(), len(wantErrs), wantErrs)
				}
			}
			srv.WaitIdle(t)
			for _, source := range sources {
				checkSummary(ctx, rt, client, what, source, model.stats[source])
			}
		}
	})
}

// errorsMatch compares a result's errors with the model's: "point N"
// entries start with "point N: ", a failed batch's entry names the store's
// error, and "and K more" is exact.
func errorsMatch(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i, w := range want {
		switch {
		case strings.HasPrefix(w, "point "):
			if !strings.HasPrefix(got[i], w+": ") {
				return false
			}
		case w == "batch":
			if !strings.Contains(got[i], "disk full (injected by the test)") {
				return false
			}
		case got[i] != w:
			return false
		}
	}
	return true
}

func checkSummary(ctx context.Context, rt *rapid.T, client pb.DataCollectionServiceClient, after, source string, want map[string]*MetricStats) {
	got, err := client.GetMetricsSummary(ctx, &pb.GetMetricsSummaryRequest{Source: source})
	if want == nil {
		if status.Code(err) != codes.NotFound {
			rt.Fatalf("after %s GetMetricsSummary(%q) = %v, %v; want code NotFound (nothing of it saved and aggregated)", after, source, got, err)
		}
		return
	}
	st := want["cpu"]
	wantSummary := &pb.MetricSummary{Name: "cpu", Count: st.Count, Min: st.Min, Max: st.Max, Mean: st.Sum / float64(st.Count), Last: st.Last}
	if err != nil || len(got.GetMetrics()) != 1 || !equalSummary(got.GetMetrics()[0], wantSummary) {
		rt.Fatalf("after %s GetMetricsSummary(%q) = %v, %v; want %v", after, source, got.GetMetrics(), err, wantSummary)
	}
}

func equalSummary(a, b *pb.MetricSummary) bool {
	return a.GetName() == b.GetName() && a.GetCount() == b.GetCount() && a.GetMin() == b.GetMin() &&
		a.GetMax() == b.GetMax() && a.GetMean() == b.GetMean() && a.GetLast() == b.GetLast()
}
