package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ghzPackage is the main package of ghz in tools/clients/go.mod.
const ghzPackage = "github.com/bojand/ghz/cmd/ghz"

// Bounds of the load check: it runs on the shared 2-core machine, so the
// runs are short and their figures are only printed, never asserted.
const (
	loadCallTimeout = 20 * time.Second // ghz --timeout, for one call
	loadRunTimeout  = 3 * time.Minute  // one ghz run
)

// loadSpec is a day's "load" section in kata.json: the calls ghz makes
// against the day's server, started with the reference solutions as
// "go run ./DAY ServerArgs -addr 127.0.0.1:PORT".
type loadSpec struct {
	ServerArgs []string   `json:"server_args"`
	Calls      []loadCall `json:"calls"`
}

// loadCall is one ghz run: Total calls of the fully qualified method Call,
// Concurrency at a time, each sending the Data messages (a client stream
// sends them all). String fields may use ghz's templates, such as
// {{.UUID}}, to make every call different.
type loadCall struct {
	Call        string            `json:"call"`
	Total       int               `json:"total"`
	Concurrency int               `json:"concurrency"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Data        []json.RawMessage `json:"data"`
}

func (s *loadSpec) validate() error {
	var errs []error
	if len(s.Calls) == 0 {
		errs = append(errs, errors.New("load.calls is empty"))
	}
	for i, c := range s.Calls {
		if strings.Count(c.Call, ".") < 2 {
			errs = append(errs, fmt.Errorf("load.calls[%d]: call %q is not package.Service.Method", i, c.Call))
		}
		if c.Total <= 0 || c.Total > 10000 || c.Concurrency <= 0 || c.Concurrency > c.Total {
			errs = append(errs, fmt.Errorf("load.calls[%d] (%s): want 0 < concurrency <= total <= 10000, got concurrency %d, total %d", i, c.Call, c.Concurrency, c.Total))
		}
		if len(c.Data) == 0 {
			errs = append(errs, fmt.Errorf("load.calls[%d] (%s): data is empty", i, c.Call))
		}
	}
	return errors.Join(errs...)
}

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

// cmdLoad puts each day's server, running the reference solutions on
// loopback, under a short ghz load, and fails on any call that did not
// end OK.
func cmdLoad(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	var todo []day
	for _, d := range days {
		if d.kata.Load == nil {
			fmt.Printf("day%s: kata.json has no load section\n", d.num)
			continue
		}
		todo = append(todo, d)
	}
	if len(todo) == 0 {
		return nil
	}
	grpcurl, err := r.buildGrpcurl(ctx) // for the server's health check
	if err != nil {
		return err
	}
	ghz, err := r.buildGhz(ctx)
	if err != nil {
		return err
	}
	var failed []string
	for _, d := range todo {
		if err := r.loadDay(ctx, d, grpcurl, ghz); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Printf("day%s load: FAILED: %v\n", d.num, err)
			failed = append(failed, d.dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("load failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// buildGhz builds the ghz pinned in tools/clients/go.mod into .bin/ghz.
func (r *repo) buildGhz(ctx context.Context) (string, error) {
	bin := filepath.Join(r.root, ".bin", "ghz")
	fmt.Println("building ghz from tools/clients/go.mod into .bin/ghz (the first build takes a few minutes; later ones take seconds)")
	if err := r.run(ctx, runOpts{timeout: grpcurlBuildTimeout}, "go", "build", "-C", "tools/clients", "-o", bin, ghzPackage); err != nil {
		return "", fmt.Errorf("building ghz: %w", err)
	}
	return bin, nil
}

// loadDay starts the day's server and runs its calls against it.
func (r *repo) loadDay(ctx context.Context, d day, grpcurl, ghz string) error {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	args := append([]string{d.pkg()}, d.kata.Load.ServerArgs...)
	return r.withReferenceServer(ctx, d, append(args, "-addr", addr), addr, grpcurl, func(srv *server) error {
		return r.runLoad(ctx, d, ghz, addr, srv)
	})
}

// runLoad runs the day's calls against its running server.
func (r *repo) runLoad(ctx context.Context, d day, ghz, addr string, srv *server) error {
	dir, err := os.MkdirTemp("", "kata-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var failed []string
	for i, c := range d.kata.Load.Calls {
		report, err := r.runGhz(ctx, ghz, addr, c, filepath.Join(dir, fmt.Sprintf("data-%d.json", i)))
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
		srv.showOutput()
		return fmt.Errorf("calls that did not all end OK: %s", strings.Join(failed, ", "))
	}
	return nil
}

// runGhz runs one loadCall and decodes ghz's report.
func (r *repo) runGhz(ctx context.Context, ghz, addr string, c loadCall, dataFile string) (*ghzReport, error) {
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
	err = r.run(ctx, runOpts{timeout: loadRunTimeout, stdout: &out, stderr: &stderr}, ghz, append(args, addr)...)
	if err != nil {
		return nil, fmt.Errorf("ghz: %w\n%s", err, quoteOutput(stderr.String()))
	}
	var report ghzReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		return nil, fmt.Errorf("reading ghz's JSON report: %w\n%s", err, quoteOutput(out.String()))
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
