package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// ghzPackage is the main package of ghz in tools/clients/go.mod.
const ghzPackage = "github.com/bojand/ghz/cmd/ghz"

// Bounds of the load check: it runs on the shared 2-core machine, so the
// runs are short and their figures are only printed, never asserted.
const (
	loadCallTimeout = 20 * time.Second // ghz --timeout, for one call
	loadRunTimeout  = 3 * time.Minute  // one ghz run
)

// ghzReport is the part of ghz's JSON report (-O json) the check reads.
type ghzReport struct {
	Count                  int            `json:"count"`
	Total                  time.Duration  `json:"total"`
	RPS                    float64        `json:"rps"`
	StatusCodeDistribution map[string]int `json:"statusCodeDistribution"`
	ErrorDistribution      map[string]int `json:"errorDistribution"`
	LatencyDistribution    []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

// problems says how a run falls short: ghz exits 0 even when every call
// failed, so the status codes are checked here.
func (g *ghzReport) problems(want int) []string {
	var out []string
	if g.Count != want {
		out = append(out, fmt.Sprintf("%d calls were made, want %d", g.Count, want))
	}
	for _, code := range slices.Sorted(maps.Keys(g.StatusCodeDistribution)) {
		if n := g.StatusCodeDistribution[code]; code != "OK" && n > 0 {
			out = append(out, fmt.Sprintf("%d calls ended with %s", n, code))
		}
	}
	if g.StatusCodeDistribution["OK"] != want {
		out = append(out, fmt.Sprintf("%d calls ended OK, want all %d", g.StatusCodeDistribution["OK"], want))
	}
	for _, msg := range slices.Sorted(maps.Keys(g.ErrorDistribution)) {
		out = append(out, fmt.Sprintf("%d× %s", g.ErrorDistribution[msg], msg))
	}
	return out
}

// latency returns the p-th percentile latency ghz reported.
func (g *ghzReport) latency(p int) time.Duration {
	for _, l := range g.LatencyDistribution {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return 0
}

// CmdLoad puts each day's server, running the reference solutions on
// loopback, under a short ghz load, and fails on any call that did not
// end OK.
func CmdLoad(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	var todo []core.Day
	for _, d := range days {
		if d.Kata.Load == nil {
			fmt.Printf("day%s: kata.json has no load section\n", d.Num)
			continue
		}
		todo = append(todo, d)
	}
	if len(todo) == 0 {
		return nil
	}
	grpcurl, err := buildGrpcurl(ctx, r) // for the server's health check
	if err != nil {
		return err
	}
	ghz, err := buildGhz(ctx, r)
	if err != nil {
		return err
	}
	var failed []string
	for _, d := range todo {
		if err := loadDay(ctx, r, d, grpcurl, ghz); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Printf("day%s load: FAILED: %v\n", d.Num, err)
			failed = append(failed, d.Dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("load failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// buildGhz builds the ghz pinned in tools/clients/go.mod into .bin/ghz.
func buildGhz(ctx context.Context, r *core.Repo) (string, error) {
	bin := filepath.Join(r.Root, ".bin", "ghz")
	fmt.Println("building ghz from tools/clients/go.mod into .bin/ghz (the first build takes a few minutes; later ones take seconds)")
	if err := r.Run(ctx, core.RunOpts{Timeout: grpcurlBuildTimeout}, "go", "build", "-C", "tools/clients", "-o", bin, ghzPackage); err != nil {
		return "", fmt.Errorf("building ghz: %w", err)
	}
	return bin, nil
}

// loadDay starts the day's server and runs its calls against it.
func loadDay(ctx context.Context, r *core.Repo, d core.Day, grpcurl, ghz string) error {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	args := append([]string{d.Pkg()}, d.Kata.Load.ServerArgs...)
	return r.WithReferenceServer(ctx, d, append(args, "-addr", addr), addr, grpcurl, func(srv *core.Server) error {
		return runLoad(ctx, r, d, ghz, addr, srv)
	})
}

// runLoad runs the day's calls against its running server.
func runLoad(ctx context.Context, r *core.Repo, d core.Day, ghz, addr string, srv *core.Server) error {
	dir, err := os.MkdirTemp("", "kata-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var failed []string
	for i, c := range d.Kata.Load.Calls {
		report, err := runGhz(ctx, r, ghz, addr, c, filepath.Join(dir, fmt.Sprintf("data-%d.json", i)))
		if err != nil {
			return fmt.Errorf("%s: %w", c.Call, err)
		}
		if problems := report.problems(c.Total); len(problems) > 0 {
			fmt.Printf("FAIL %s: %s\n", c.Call, strings.Join(problems, "; "))
			failed = append(failed, c.Call)
			continue
		}
		fmt.Printf("ok   %s: %d calls of %d messages, %d at a time, all OK: %.0f calls/s, p50 %v, p99 %v\n",
			c.Call, report.Count, len(c.Data), c.Concurrency, report.RPS,
			report.latency(50).Round(time.Microsecond), report.latency(99).Round(time.Microsecond))
	}
	if len(failed) > 0 {
		srv.ShowOutput()
		return fmt.Errorf("calls that did not all end OK: %s", strings.Join(failed, ", "))
	}
	return nil
}

// runGhz runs one loadCall and decodes ghz's report.
func runGhz(ctx context.Context, r *core.Repo, ghz, addr string, c core.LoadCall, dataFile string) (*ghzReport, error) {
	data, err := json.Marshal(c.Data)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(dataFile, data, 0o600); err != nil {
		return nil, err
	}
	args := []string{"--insecure", "--call", c.Call, "--data-file", dataFile,
		"-n", fmt.Sprint(c.Total), "-c", fmt.Sprint(c.Concurrency),
		"--timeout", loadCallTimeout.String(), "-O", "json"}
	if len(c.Metadata) > 0 {
		md, err := json.Marshal(c.Metadata)
		if err != nil {
			return nil, err
		}
		args = append(args, "--metadata", string(md))
	}
	var out, stderr bytes.Buffer
	err = r.Run(ctx, core.RunOpts{Timeout: loadRunTimeout, Stdout: &out, Stderr: &stderr}, ghz, append(args, addr)...)
	if err != nil {
		return nil, fmt.Errorf("ghz: %w\n%s", err, core.QuoteOutput(stderr.String()))
	}
	var report ghzReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		return nil, fmt.Errorf("reading ghz's JSON report: %w\n%s", err, core.QuoteOutput(out.String()))
	}
	return &report, nil
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port that was free
// a moment ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
