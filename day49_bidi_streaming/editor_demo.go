package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// demoDocument is the document the demo's editors share.
const (
	demoDocument     = "groceries"
	demoDocumentText = "Groceries:\n"
)

// runEditorDemo has three editors change one document at the same time
// and shows that their replicas end with the server's text.
func runEditorDemo(ctx context.Context, target string) error {
	users := []string{"alice", "bob", "carol"}
	sessions := make([]*EditSession, len(users))
	for i, user := range users {
		client, err := NewEditorClient(target, demoToken(user))
		if err != nil {
			return err
		}
		defer client.Close()
		s, err := client.Open(ctx, demoDocument, nil)
		if err != nil {
			return explain(user, err)
		}
		defer s.Cancel()
		sessions[i] = s
	}

	fmt.Printf("Three editors open %q (%q) and edit it at once:\n", demoDocument, demoDocumentText)
	header := len([]rune(demoDocumentText))
	items := []string{"- milk\n", "- eggs\n", "- bread\n"}
	if err := concurrently(sessions, func(i int, s *EditSession) error {
		fmt.Printf("  %-5s inserts %q at %d\n", users[i], items[i], header)
		return s.Edit(Insert(header, items[i]))
	}); err != nil {
		return err
	}
	if err := syncAll(ctx, sessions); err != nil {
		return err
	}

	// Alice deletes the whole list while bob, who has not seen that yet,
	// adds to its first item: his insert falls inside her deleted range,
	// and goes with it.
	list := len([]rune(sessions[0].Text())) - header
	firstItemEnd := header + len([]rune(strings.SplitAfter(sessions[1].Text(), "\n")[1])) - 1
	fmt.Printf("  alice deletes the %d characters of the list while bob inserts %q at %d\n", list, " x2", firstItemEnd)
	if err := concurrently(sessions[:2], func(i int, s *EditSession) error {
		if i == 0 {
			return s.Edit(Delete(header, list))
		}
		return s.Edit(Insert(firstItemEnd, " x2"))
	}); err != nil {
		return err
	}
	if err := sessions[2].Edit(Insert(header, "- coffee\n")); err != nil {
		return err
	}
	fmt.Printf("  carol inserts %q at %d\n", "- coffee\n", header)
	if err := syncAll(ctx, sessions); err != nil {
		return err
	}

	text, revision := sessions[0].Text(), sessions[0].Revision()
	fmt.Printf("At revision %d alice's replica reads:\n", revision)
	for line := range strings.Lines(text) {
		fmt.Print("    ", line)
	}
	for i, s := range sessions[1:] {
		if s.Text() != text || s.Revision() != revision {
			return fmt.Errorf("%s's replica reads %q at revision %d: the replicas diverged", users[i+1], s.Text(), s.Revision())
		}
	}
	fmt.Println("  bob's and carol's replicas are identical: the three converged.")
	for i, s := range sessions {
		if err := s.Close(); err != nil {
			return explain(users[i], err)
		}
	}
	return nil
}

// concurrently runs edit for each session in a goroutine of its own and
// returns the first error.
func concurrently(sessions []*EditSession, edit func(i int, s *EditSession) error) error {
	errs := make([]error, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() { errs[i] = edit(i, s) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// syncAll waits until every session's edits are acknowledged, then until
// every session has applied the latest revision any of them has seen.
func syncAll(ctx context.Context, sessions []*EditSession) error {
	var latest int64
	for _, s := range sessions {
		if err := s.WaitSynced(ctx, 0); err != nil {
			return err
		}
		latest = max(latest, s.Revision())
	}
	for _, s := range sessions {
		if err := s.WaitSynced(ctx, latest); err != nil {
			return err
		}
	}
	return nil
}
