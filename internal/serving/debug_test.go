package serving

import (
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServeDebug(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	stop := ServeDebug(lis)
	defer stop()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	res, err := client.Get("http://" + lis.Addr().String() + "/debug/state")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var st State
	require.NoError(t, json.NewDecoder(res.Body).Decode(&st))
	assert.Positive(t, st.Goroutines, "goroutines")
	assert.Positive(t, st.HeapLiveBytes, "live heap")

	prof, err := client.Get("http://" + lis.Addr().String() + "/debug/pprof/goroutine?debug=1")
	require.NoError(t, err)
	prof.Body.Close()
	assert.Equal(t, http.StatusOK, prof.StatusCode, "the goroutine profile")
}
