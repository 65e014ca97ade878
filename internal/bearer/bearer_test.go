package bearer

import (
	"crypto/sha256"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTokenStore(t *testing.T) {
	s := NewTokenStore()
	alice := Identity{User: "alice", Expires: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s.Add("alice-token", alice)
	if id, ok := s.lookup("alice-token"); !ok || id != alice {
		t.Fatalf("lookup(alice-token) = %v, %v, want alice", id, ok)
	}
	for _, guess := range []string{"alice-toke", "alice-token ", "", "ALICE-TOKEN"} {
		if _, ok := s.lookup(guess); ok {
			t.Fatalf("lookup(%q) found an identity, want none", guess)
		}
	}
	// The store keys by digest: the token itself is kept nowhere, so a
	// lookup's time cannot depend on how much of a guess was right.
	if _, ok := s.tokens[sha256.Sum256([]byte("alice-token"))]; !ok || len(s.tokens) != 1 {
		t.Fatalf("the store holds %d keys and not alice's digest, want exactly her token's SHA-256", len(s.tokens))
	}
}
