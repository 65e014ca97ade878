package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// LoadSpec is a day's "load" section in kata.json: the calls ghz makes
// against the day's server, started with the reference solutions as
// "go run ./DAY ServerArgs -addr 127.0.0.1:PORT".
type LoadSpec struct {
	ServerArgs []string   `json:"server_args"`
	Calls      []LoadCall `json:"calls"`
}

// LoadCall is one ghz run: Total calls of the fully qualified method Call,
// Concurrency at a time, each sending the Data messages (a client stream
// sends them all). String fields may use ghz's templates, such as
// {{.UUID}}, to make every call different.
type LoadCall struct {
	Call        string            `json:"call"`
	Total       int               `json:"total"`
	Concurrency int               `json:"concurrency"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Data        []json.RawMessage `json:"data"`
}

func (s *LoadSpec) Validate() error {
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

// abuseSpec is a day's "abuse" section in kata.json: the flags its server
// is started with for the abuse suite, which shrink limits that the
// attacks would otherwise wait out (the idle limit of a client stream).
// "{{dir}}" in a flag stands for a new empty folder, whose path the suite
// gets in ABUSE_DIR_<day>.
type abuseSpec struct {
	ServerArgs []string `json:"server_args"`
}
