package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateDataPoint(t *testing.T) {
	now, skew := collectionNow, 5*time.Minute
	// n entries named prefix0, prefix1, ...
	metrics := func(n int) map[string]float64 {
		m := map[string]float64{}
		for i := range n {
			m[fmt.Sprint("m", i)] = 1
		}
		return m
	}
	tags := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprint("t", i)] = "v"
		}
		return m
	}
	// Byte limits are in bytes: "é" is two of them.
	bytesOf := func(n int) string { return strings.Repeat("é", n/2) + strings.Repeat("x", n%2) }
	valid := []struct {
		test string
		edit func(p *pb.DataPoint)
	}{
		{"Typical_point", func(p *pb.DataPoint) {}},
		{"One_character_source", func(p *pb.DataPoint) { p.Source = "a" }},
		{"64_byte_source", func(p *pb.DataPoint) { p.Source = "a" + strings.Repeat("b", 63) }},
		{"Source_with_dots_dashes_underscores", func(p *pb.DataPoint) { p.Source = "db.eu-west_1" }},
		{"Timestamp_exactly_MaxFutureSkew_ahead", func(p *pb.DataPoint) { p.Timestamp = timestamppb.New(now.Add(skew)) }},
		{"64_metrics", func(p *pb.DataPoint) { p.Metrics = metrics(64) }},
		{"Largest_finite_values", func(p *pb.DataPoint) { p.Metrics = map[string]float64{"max": math.MaxFloat64, "min": -math.MaxFloat64} }},
		{"64_byte_metric_name", func(p *pb.DataPoint) { p.Metrics = map[string]float64{bytesOf(64): 1} }},
		{"No_tags", func(p *pb.DataPoint) { p.Tags = nil }},
		{"32_tags", func(p *pb.DataPoint) { p.Tags = tags(32) }},
		{"128_byte_tag_key_and_value", func(p *pb.DataPoint) { p.Tags = map[string]string{bytesOf(128): bytesOf(128)} }},
	}
	for _, tc := range valid {
		t.Run("Accepts_"+tc.test, func(t *testing.T) {
			p := point("web-01", 1)
			tc.edit(p)
			assert.NoError(t, validateDataPoint(p, now, skew), "validateDataPoint(%s)", tc.test)
		})
	}
	invalid := []struct {
		test    string
		edit    func(p *pb.DataPoint)
		mention string
	}{
		{"Empty_source", func(p *pb.DataPoint) { p.Source = "" }, "source"},
		{"65_byte_source", func(p *pb.DataPoint) { p.Source = strings.Repeat("s", 65) }, "64"},
		{"Source_with_a_quote", func(p *pb.DataPoint) { p.Source = "x'; DROP TABLE points; --" }, "source"},
		{"Upper_case_source", func(p *pb.DataPoint) { p.Source = "Web-01" }, "source"},
		{"Source_starting_with_a_dash", func(p *pb.DataPoint) { p.Source = "-web" }, "source"},
		{"No_timestamp", func(p *pb.DataPoint) { p.Timestamp = nil }, "timestamp"},
		{"Zero_timestamp", func(p *pb.DataPoint) { p.Timestamp = &timestamppb.Timestamp{} }, "timestamp"},
		{"Out_of_range_timestamp", func(p *pb.DataPoint) { p.Timestamp = &timestamppb.Timestamp{Seconds: now.Unix(), Nanos: 1e9} }, "timestamp"},
		{"Timestamp_a_nanosecond_past_MaxFutureSkew", func(p *pb.DataPoint) { p.Timestamp = timestamppb.New(now.Add(skew + time.Nanosecond)) }, "ahead"},
		{"Far_future_timestamp", func(p *pb.DataPoint) { p.Timestamp = timestamppb.New(now.Add(time.Hour)) }, "ahead"},
		{"No_metrics", func(p *pb.DataPoint) { p.Metrics = nil }, "metrics"},
		{"65_metrics", func(p *pb.DataPoint) { p.Metrics = metrics(65) }, "64"},
		{"NaN", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.NaN() }, "NaN"},
		{"Plus_Inf", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(1) }, "Inf"},
		{"Minus_Inf", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(-1) }, "Inf"},
		{"Empty_metric_name", func(p *pb.DataPoint) { p.Metrics[""] = 1 }, "metric"},
		{"65_byte_metric_name", func(p *pb.DataPoint) { p.Metrics = map[string]float64{bytesOf(65): 1} }, "64"},
		{"33_tags", func(p *pb.DataPoint) { p.Tags = tags(33) }, "32"},
		{"129_byte_tag_value", func(p *pb.DataPoint) { p.Tags["note"] = bytesOf(129) }, "128"},
		{"129_byte_tag_key", func(p *pb.DataPoint) { p.Tags[bytesOf(129)] = "v" }, "128"},
	}
	t.Run("Names_the_first_bad_metric_and_tag_in_name_order", func(t *testing.T) {
		// Map order is random: the same point gets the same message on
		// every call, naming the first wrong entry by name.
		badMetrics := point("web-01", 1)
		badMetrics.Metrics = map[string]float64{"alpha": 1, "delta": math.NaN(), "beta": math.Inf(1), "gamma": math.NaN(), "zeta": math.Inf(-1)}
		badTags := point("web-01", 1)
		badTags.Tags = map[string]string{"a": "v", "c" + bytesOf(128): "v", "b" + bytesOf(128): "v", "d": bytesOf(129)}
		for _, tc := range []struct {
			what   string
			p      *pb.DataPoint
			first  string
			others []string
		}{
			{"four bad metrics", badMetrics, `"beta"`, []string{"delta", "gamma", "zeta"}},
			{"three bad tags", badTags, `"bé`, []string{`"cé`, `"d"`}},
		} {
			for range 20 {
				err := validateDataPoint(tc.p, now, skew)
				katatest.WantCode(t, err, codes.InvalidArgument, "validateDataPoint(%s)", tc.what)
				msg := status.Convert(err).Message()
				if !strings.Contains(msg, tc.first) || slices.ContainsFunc(tc.others, func(o string) bool { return strings.Contains(msg, o) }) {
					t.Fatalf("validateDataPoint(%s) = %q, want it to name %s, the first wrong one in name order, on every call", tc.what, msg, tc.first)
				}
			}
		}
	})
	for _, tc := range invalid {
		t.Run("Rejects_"+tc.test, func(t *testing.T) {
			p := point("web-01", 1)
			tc.edit(p)
			err := validateDataPoint(p, now, skew)
			katatest.WantCode(t, err, codes.InvalidArgument, "validateDataPoint(%s)", tc.test)
			katatest.WantMessage(t, err, "validateDataPoint(%s)", tc.test)(tc.mention)
		})
	}
}

func TestDataCollection(t *testing.T) {
	t.Run("Batch_data_points", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		var points []*pb.DataPoint
		for i := range 1000 {
			points = append(points, point("web-01", i))
		}
		res, err := sendPoints(ctx, env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(1000 valid points)")
		wantCounts(t, res, 1000, 1000, 0)
		assert.Equal(t, slices.Repeat([]int{100}, 10), env.store.savedSizes(), "sizes of the batches the store saved")
		for i, p := range env.store.savedPoints() {
			if !proto.Equal(p, points[i]) {
				t.Fatalf("the store holds %v as point %d, want %v: a slice given to SaveBatch changed after it returned; start a new slice after each save, the store may keep the old one", p, i, points[i])
			}
		}
		sum, err := env.client.GetMetricsSummary(ctx, &pb.GetMetricsSummaryRequest{Source: "web-01"})
		katatest.WantCode(t, err, codes.OK, "GetMetricsSummary(%q)", "web-01")
		require.NotEmpty(t, sum.GetMetrics(), "GetMetricsSummary(web-01) metrics")
		katatest.EqualProto(t, &pb.MetricSummary{Name: "cpu", Count: 1000, Min: 0, Max: 99, Mean: 49.5, Last: 99}, sum.GetMetrics()[0], "GetMetricsSummary(web-01) cpu")
	})

	t.Run("Real_time_streaming", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		stream, err := env.client.CollectDataPoints(ctx)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints()")
		for i := range 250 {
			sendOrFail(t, stream, point("web-02", i), "CollectDataPoints point %d", i)
			if i == 199 {
				env.store.waitSaves(t, env.Server, 2) // both full batches, before the stream ends
			}
		}
		res, err := stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(250 points)")
		wantCounts(t, res, 250, 250, 0)
		if sizes := env.store.savedSizes(); !slices.Equal(sizes, []int{100, 100, 50}) {
			t.Fatalf("store saved batches of %v points, want [100 100 50] (the rest saved at the end)", sizes)
		}
	})

	t.Run("Counts_invalid_points_and_goes_on", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		var points []*pb.DataPoint
		for i := range 300 {
			p := point("web-03", i)
			if i%30 == 17 {
				p.Metrics["cpu"] = math.NaN()
			}
			points = append(points, p)
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(300 points, 10 NaN)")
		wantCounts(t, res, 300, 290, 10)
		require.Len(t, res.GetErrors(), 10, "CollectDataPoints errors = %q", res.GetErrors())
		assert.Regexp(t, `^point 17:.*NaN`, res.GetErrors()[0], "the first error, want the point's index and the reason")
	})

	t.Run("Reports_exactly_MaxErrorsReported_errors_without_more", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxErrorsReported: 5})
		points := []*pb.DataPoint{point("web-04", 0)}
		for range 5 {
			points = append(points, &pb.DataPoint{Source: "web-04"})
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(1 valid, 5 invalid points)")
		wantCounts(t, res, 6, 1, 5)
		require.Len(t, res.GetErrors(), 5, "CollectDataPoints errors = %q, want the 5 errors and no \"and 0 more\"", res.GetErrors())
		for i, e := range res.GetErrors() {
			assert.True(t, strings.HasPrefix(e, fmt.Sprintf("point %d:", i+1)), "error %d = %q, want it to start with the point's index, %q", i, e, fmt.Sprintf("point %d:", i+1))
		}
		res, err = sendPoints(katatest.Context(t), env.client, append(points, &pb.DataPoint{Source: "web-04"})...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(1 valid, 6 invalid points)")
		require.Len(t, res.GetErrors(), 6, "CollectDataPoints errors = %q, want 5 errors then %q", res.GetErrors(), "and 1 more")
		assert.Equal(t, "and 1 more", res.GetErrors()[5], "the last of CollectDataPoints errors")
	})

	t.Run("Reports_processing_time_from_the_servers_clock", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		stream, err := env.client.CollectDataPoints(katatest.Context(t))
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints()")
		for i := range 100 {
			sendOrFail(t, stream, point("web-09", i), "CollectDataPoints point %d", i)
		}
		env.store.waitSaves(t, env.Server, 1)
		env.clock.Advance(1500 * time.Millisecond)
		res, err := stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(100 points)")
		assert.EqualValues(t, 1500, res.GetProcessingTimeMs(), "processing_time_ms of a stream during which the server's clock (CollectionConfig.Now) moved 1.5s")
	})

	t.Run("Saves_what_it_received_when_the_stream_breaks", func(t *testing.T) {
		var received atomic.Int32
		reached := make(chan struct{})
		count := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, &recvSignal{ServerStream: ss, onRecv: func() {
				if received.Add(1) == 150 {
					close(reached)
				}
			}})
		}
		env := startCollectionServer(t, CollectionConfig{}, katatest.WithStreamInterceptor(count))
		ctx, cancel := context.WithCancel(katatest.Context(t))
		stream, err := env.client.CollectDataPoints(ctx)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints()")
		for i := range 150 {
			sendOrFail(t, stream, point("web-10", i), "CollectDataPoints point %d", i)
		}
		// The handler takes in each point before it asks for the next, so
		// once 150 receives have returned, cancelling cannot lose one.
		awaitWhileRunning(t, env.Server, pointsMethod, reached, "the server to receive 150 points")
		cancel()
		env.WaitIdle(t)
		if ended := env.Ended(pointsMethod); assert.Len(t, ended, 1, "CollectDataPoints handlers that ended") {
			katatest.WantCode(t, ended[0], codes.Canceled, "the CollectDataPoints handler after the client cancelled")
		}
		assert.Equal(t, []int{100, 50}, env.store.savedSizes(), "batches saved of a stream cancelled after 150 points, want the 50 accepted after the first batch saved too")
		for i, err := range env.store.contextErrors() {
			assert.NoError(t, err, "the context SaveBatch %d got, want one that outlives the broken stream", i+1)
		}
	})

	t.Run("Reports_the_first_errors_then_how_many_more", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxErrorsReported: 5})
		var points []*pb.DataPoint
		for range 12 {
			points = append(points, &pb.DataPoint{Source: "web-04"})
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(12 invalid points)")
		wantCounts(t, res, 12, 0, 12)
		require.Len(t, res.GetErrors(), 6, "CollectDataPoints errors = %q, want 5 errors then %q", res.GetErrors(), "and 7 more")
		assert.Equal(t, "and 7 more", res.GetErrors()[5], "the last of CollectDataPoints errors")
	})

	t.Run("Failed_batch_counts_as_errors", func(t *testing.T) {
		store := &recordingStore{saved: make(chan int, 100), failBatches: []int{2}}
		env := startCollectionServer(t, CollectionConfig{Store: store})
		var points []*pb.DataPoint
		for i := range 300 {
			points = append(points, point("web-05", i))
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(300 points, second batch fails)")
		wantCounts(t, res, 300, 200, 100)
		require.NotEmpty(t, res.GetErrors(), "CollectDataPoints errors, want the failed batch reported")
		assert.Contains(t, res.GetErrors()[0], "disk full (injected by the test)", "CollectDataPoints errors, want the failed batch reported with the store's error")
	})

	t.Run("Accepts_exactly_MaxPointsPerStream", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxPointsPerStream: 150})
		var points []*pb.DataPoint
		for i := range 150 {
			points = append(points, point("web-06", i))
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(150 points, MaxPointsPerStream=150)")
		wantCounts(t, res, 150, 150, 0)
	})

	t.Run("Ends_a_stream_past_its_cap_keeping_what_it_received", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxPointsPerStream: 150})
		var points []*pb.DataPoint
		for i := range 151 {
			points = append(points, point("web-06", i))
		}
		_, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "CollectDataPoints(151 points, MaxPointsPerStream=150)")
		katatest.WantMessage(t, err, "CollectDataPoints(past the cap)")("150")
		env.WaitIdle(t)
		if sizes := env.store.savedSizes(); !slices.Equal(sizes, []int{100, 50}) {
			t.Fatalf("store saved batches of %v points, want [100 50]: the 150 accepted points saved", sizes)
		}
	})

	t.Run("Empty_stream", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		res, err := sendPoints(katatest.Context(t), env.client)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(no points)")
		wantCounts(t, res, 0, 0, 0)
	})

	badPoints := []struct {
		test string
		edit func(p *pb.DataPoint)
	}{
		{"Rejects_empty_source", func(p *pb.DataPoint) { p.Source = "" }},
		{"Rejects_oversized_source", func(p *pb.DataPoint) { p.Source = strings.Repeat("a", 100) }},
		{"Rejects_NaN", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.NaN() }},
		{"Rejects_positive_infinity", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(1) }},
		{"Rejects_negative_infinity", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(-1) }},
		{"Rejects_no_metrics", func(p *pb.DataPoint) { p.Metrics = nil }},
		{"Rejects_too_many_metrics", func(p *pb.DataPoint) {
			for i := range 70 {
				p.Metrics[fmt.Sprint("m", i)] = 1
			}
		}},
		{"Rejects_too_many_tags", func(p *pb.DataPoint) {
			for i := range 40 {
				p.Tags[fmt.Sprint("t", i)] = "v"
			}
		}},
		{"Rejects_zero_timestamp", func(p *pb.DataPoint) { p.Timestamp = &timestamppb.Timestamp{} }},
		{"Rejects_far_future_timestamp", func(p *pb.DataPoint) { p.Timestamp = timestamppb.New(collectionNow.Add(24 * time.Hour)) }},
	}
	for _, tc := range badPoints {
		t.Run(tc.test, func(t *testing.T) {
			env := startCollectionServer(t, CollectionConfig{})
			bad := point("web-07", 1)
			tc.edit(bad)
			res, err := sendPoints(katatest.Context(t), env.client, point("web-07", 0), bad, point("web-07", 2))
			katatest.WantCode(t, err, codes.OK, "CollectDataPoints(good, bad, good)")
			wantCounts(t, res, 3, 2, 1)
			require.Len(t, res.GetErrors(), 1, "CollectDataPoints errors = %q, want one error for point 1", res.GetErrors())
			assert.True(t, strings.HasPrefix(res.GetErrors()[0], "point 1:"), "CollectDataPoints errors = %q, want one error for point 1", res.GetErrors())
		})
	}

	t.Run("Saves_with_the_streams_values", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		_, err := sendPoints(katatest.Context(t), env.client, point("web-08", 1))
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(1 point)")
		assert.Equal(t, []string{pointsMethod}, env.store.contextMethods(), "the method each SaveBatch context carries, want the stream's values kept: context.WithoutCancel(stream.Context()), not a new context")
	})

	t.Run("Invalid_points_count_toward_MaxPointsPerStream", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxPointsPerStream: 3})
		invalid := point("", 0) // no source
		call := "CollectDataPoints(2 invalid points, then 1 valid, MaxPointsPerStream=3)"
		res, err := sendPoints(katatest.Context(t), env.client, invalid, invalid, point("web-07", 1))
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantCounts(t, res, 3, 1, 2)
		call = "CollectDataPoints(2 invalid points, then 2 valid, MaxPointsPerStream=3)"
		_, err = sendPoints(katatest.Context(t), env.client, invalid, invalid, point("web-07", 1), point("web-07", 2))
		katatest.WantCode(t, err, codes.ResourceExhausted, "%s: every point received counts toward the cap, valid or not", call)
	})

	t.Run("Matches_its_model", testCollectionMatchesItsModel)
}

func sendPoints(ctx context.Context, client pb.DataCollectionServiceClient, points ...*pb.DataPoint) (*pb.CollectionResult, error) {
	stream, err := client.CollectDataPoints(ctx)
	if err != nil {
		return nil, err
	}
	return streamAll(stream, points)
}
