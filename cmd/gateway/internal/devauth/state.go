package devauth

import (
	"crypto/rand"
	"errors"
	"time"
)

// maxEntries bounds each in-memory table, so that a client in a loop cannot exhaust memory.
const maxEntries = 10000

// errFull is returned when a table is full of live entries.
var errFull = errors.New("too many pending authorizations; try again later")

// authRequest is a validated authorization request.
type authRequest struct {
	clientID      string
	client        client
	redirectURI   string // where the response goes
	redirectGiven bool   // redirect_uri was a parameter, so the token request must repeat it
	state         string
	scope         []string
	resource      string
	challenge     string // PKCE S256 code challenge
	nonce         string
}

// grant is one user's authorization of one client: what its code and every refresh token descended from it carry.
// family identifies them together, so that reuse of a spent code or refresh token can revoke them all.
type grant struct {
	family   string
	clientID string
	user     User
	scope    []string
	resource string
	sid      string
	nonce    string
}

type codeEntry struct {
	grant
	redirectURI   string
	redirectGiven bool
	challenge     string
	expires       time.Time
}

type refreshEntry struct {
	grant
	expires time.Time
}

// spentEntry remembers a used code or refresh token until it would have expired.
type spentEntry struct {
	family  string
	expires time.Time
}

// interaction is an authorization request waiting for sign-in and consent in one browser.
type interaction struct {
	req     authRequest
	browser string // value of the browser cookie the forms must come with
	csrf    string // value of the forms' csrf_token field
	user    *User  // set by sign-in
	expires time.Time
}

// state is the server's memory. Every method must be called with Server.mu held.
type state struct {
	interactions map[string]*interaction
	codes        map[string]*codeEntry
	refresh      map[string]*refreshEntry
	spent        map[string]spentEntry
}

func newState() state {
	return state{
		interactions: map[string]*interaction{},
		codes:        map[string]*codeEntry{},
		refresh:      map[string]*refreshEntry{},
		spent:        map[string]spentEntry{},
	}
}

// sweep drops every expired entry.
func (st *state) sweep(now time.Time) {
	for k, v := range st.interactions {
		if !now.Before(v.expires) {
			delete(st.interactions, k)
		}
	}
	for k, v := range st.codes {
		if !now.Before(v.expires) {
			delete(st.codes, k)
		}
	}
	for k, v := range st.refresh {
		if !now.Before(v.expires) {
			delete(st.refresh, k)
		}
	}
	for k, v := range st.spent {
		if !now.Before(v.expires) {
			delete(st.spent, k)
		}
	}
}

// room sweeps when a table is large and reports errFull when it stays full.
func (st *state) room(now time.Time) error {
	if len(st.interactions)+len(st.codes)+len(st.refresh)+len(st.spent) < maxEntries/2 {
		return nil
	}
	st.sweep(now)
	if len(st.interactions) >= maxEntries || len(st.codes) >= maxEntries || len(st.refresh) >= maxEntries || len(st.spent) >= maxEntries {
		return errFull
	}
	return nil
}

// revoke removes every live refresh token of a family.
func (st *state) revoke(family string) {
	for k, v := range st.refresh {
		if v.family == family {
			delete(st.refresh, k)
		}
	}
}

// ulid returns 26 random characters from the base32 alphabet, the length of the ids in WorkOS's user_…, session_…
// and client_… identifiers.
func ulid() string { return rand.Text() }
