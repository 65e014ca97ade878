package main

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// converge applies a then b's transform, and b then a's, to text, and
// returns both results.
func converge(t testing.TB, text string, a, b Op) (viaA, viaB string) {
	t.Helper()
	a2, b2 := transform(a, b)
	afterA, err := a.applyString(text)
	if err != nil {
		t.Fatalf("test bug: %v does not fit %q: %v", a, text, err)
	}
	afterB, err := b.applyString(text)
	if err != nil {
		t.Fatalf("test bug: %v does not fit %q: %v", b, text, err)
	}
	if viaA, err = b2.applyString(afterA); err != nil {
		t.Fatalf("transform(%v, %v) = %v, %v: b2 does not fit %q (a applied to %q): %v", a, b, a2, b2, afterA, text, err)
	}
	if viaB, err = a2.applyString(afterB); err != nil {
		t.Fatalf("transform(%v, %v) = %v, %v: a2 does not fit %q (b applied to %q): %v", a, b, a2, b2, afterB, text, err)
	}
	return viaA, viaB
}

func TestTransform(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		a, b       Op
		want       string
		wantA2     Op // checked when not zero
		checkNoopA bool
	}{
		{name: "Concurrent_inserts_at_one_position", text: "abc", a: Insert(1, "X"), b: Insert(1, "Y"), want: "aXYbc"},
		{name: "Concurrent_inserts_at_one_position_the_other_way", text: "abc", a: Insert(1, "Y"), b: Insert(1, "X"), want: "aYXbc"},
		{name: "Inserts_at_different_positions", text: "abc", a: Insert(0, "X"), b: Insert(3, "Y"), want: "XabcY"},
		{name: "Insert_inside_a_deleted_range", text: "abcdef", a: Insert(3, "X"), b: Delete(1, 4), want: "af", checkNoopA: true},
		{name: "Deleted_range_around_an_insert", text: "abcdef", a: Delete(1, 4), b: Insert(3, "X"), want: "af"},
		{name: "Insert_at_a_delete_start", text: "abcdef", a: Insert(1, "X"), b: Delete(1, 3), want: "aXef"},
		{name: "Insert_at_a_delete_end", text: "abcdef", a: Insert(4, "X"), b: Delete(1, 3), want: "aXef"},
		{name: "Insert_before_a_delete", text: "abcdef", a: Insert(0, "X"), b: Delete(2, 2), want: "Xabef"},
		{name: "Insert_after_a_delete", text: "abcdef", a: Insert(6, "X"), b: Delete(0, 2), want: "cdefX", wantA2: Insert(4, "X")},
		{name: "Overlapping_deletes", text: "abcdef", a: Delete(1, 3), b: Delete(2, 3), want: "af"},
		{name: "Delete_inside_a_delete", text: "abcdef", a: Delete(1, 4), b: Delete(2, 1), want: "af"},
		{name: "Identical_deletes", text: "abcdef", a: Delete(2, 2), b: Delete(2, 2), want: "abef"},
		{name: "Positions_count_characters_not_bytes", text: "héllo", a: Insert(3, "X"), b: Delete(0, 2), want: "lXlo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			viaA, viaB := converge(t, tc.text, tc.a, tc.b)
			a2, b2 := transform(tc.a, tc.b)
			if viaA != tc.want || viaB != tc.want {
				t.Fatalf("on %q, transform(%v, %v) = %v, %v: a then b2 gives %q, b then a2 gives %q; want both %q", tc.text, tc.a, tc.b, a2, b2, viaA, viaB, tc.want)
			}
			if tc.checkNoopA && !a2.isNoop() {
				t.Fatalf("transform(%v, %v): a2 = %v, want a no-op (the insert went with the deleted range)", tc.a, tc.b, a2)
			}
			if tc.wantA2 != (Op{}) && a2 != tc.wantA2 {
				t.Fatalf("transform(%v, %v): a2 = %v, want %v", tc.a, tc.b, a2, tc.wantA2)
			}
		})
	}
}

// randomOp returns an operation that fits text: an insert, a delete, or
// now and then a no-op.
func randomOp(rng *rand.Rand, text string) Op {
	n := len([]rune(text))
	switch k := rng.IntN(10); {
	case k == 0:
		return Op{}
	case k < 5 || n == 0:
		alphabet := []rune("xyzé")
		word := make([]rune, 1+rng.IntN(3))
		for i := range word {
			word[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return Insert(rng.IntN(n+1), string(word))
	default:
		pos := rng.IntN(n)
		return Delete(pos, 1+rng.IntN(n-pos))
	}
}

func TestTransformConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(48, 49))
	for i := range 20000 {
		text := string([]rune("abcdefghij")[:rng.IntN(11)])
		a, b := randomOp(rng, text), randomOp(rng, text)
		viaA, viaB := converge(t, text, a, b)
		if viaA != viaB {
			a2, b2 := transform(a, b)
			t.Fatalf("case %d: on %q, transform(%v, %v) = %v, %v: a then b2 gives %q, b then a2 gives %q; want the same text", i, text, a, b, a2, b2, viaA, viaB)
		}
	}
}

// FuzzTransform checks convergence for any two operations on any text:
// go test -run=NONE -fuzz=FuzzTransform ./day49_bidi_streaming
func FuzzTransform(f *testing.F) {
	f.Add("abcdef", true, 1, 0, "X", false, 1, 4, "")
	f.Add("abc", true, 1, 0, "X", true, 1, 0, "Y")
	f.Add("abcdef", false, 1, 3, "", false, 2, 3, "")
	f.Add("héllo", true, 5, 0, "é", false, 0, 5, "")
	f.Fuzz(func(t *testing.T, text string, aIns bool, aPos, aLen int, aText string, bIns bool, bPos, bLen int, bText string) {
		a, b := fitOp(text, aIns, aPos, aLen, aText), fitOp(text, bIns, bPos, bLen, bText)
		if viaA, viaB := converge(t, text, a, b); viaA != viaB {
			a2, b2 := transform(a, b)
			t.Fatalf("on %q, transform(%v, %v) = %v, %v: a then b2 gives %q, b then a2 gives %q", text, a, b, a2, b2, viaA, viaB)
		}
	})
}

// fitOp turns fuzzer input into an operation that fits text.
func fitOp(text string, ins bool, pos, n int, insText string) Op {
	size := len([]rune(text))
	pos = abs(pos) % (size + 1)
	if ins {
		if insText == "" {
			insText = "x"
		}
		return Insert(pos, strings.ToValidUTF8(insText, "?"))
	}
	if pos == size {
		return Op{}
	}
	return Delete(pos, 1+abs(n)%(size-pos))
}

func abs(n int) int {
	if n < 0 {
		return -(n + 1) // never overflows
	}
	return n
}
