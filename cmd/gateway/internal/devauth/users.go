package devauth

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// User is an account of the development authorization server.
type User struct {
	ID          string // sub, user_…
	Email       string
	FirstName   string
	LastName    string
	OrgID       string // org_… or empty: the user belongs to no organization
	Roles       []string
	Permissions []string
}

// Name is the user's full name.
func (u User) Name() string { return strings.TrimSpace(u.FirstName + " " + u.LastName) }

// DemoUsers returns the demo accounts: an admin and a member of one organization, and a user without one.
func DemoUsers() []User {
	return []User{
		{ID: "user_dev_admin", Email: "admin@example.com", FirstName: "Ada", LastName: "Admin", OrgID: "org_dev_acme",
			Roles: []string{"admin"}, Permissions: []string{"users:read", "users:write", "billing:manage"}},
		{ID: "user_dev_member", Email: "member@example.com", FirstName: "Max", LastName: "Member", OrgID: "org_dev_acme",
			Roles: []string{"member"}, Permissions: []string{"users:read"}},
		{ID: "user_dev_guest", Email: "guest@example.com", FirstName: "Gus", LastName: "Guest"},
	}
}

// validateUsers checks that users is not empty and that ids and emails are unique and present.
func validateUsers(users []User) error {
	if len(users) == 0 {
		return errors.New("users: at least one user is needed")
	}
	seen := map[string]bool{}
	var errs []error
	for i, u := range users {
		if !strings.HasPrefix(u.ID, "user_") || u.Email == "" {
			errs = append(errs, fmt.Errorf("users[%d]: needs an id starting with user_ and an email", i))
		}
		for _, k := range []string{u.ID, strings.ToLower(u.Email)} {
			if seen[k] {
				errs = append(errs, fmt.Errorf("users[%d]: %q is not unique", i, k))
			}
			seen[k] = true
		}
	}
	return errors.Join(errs...)
}

// findUser looks a user up by id or email (email case-insensitively).
func (s *Server) findUser(idOrEmail string) (User, bool) {
	for _, u := range s.users {
		if u.ID == idOrEmail || strings.EqualFold(u.Email, idOrEmail) {
			return u, true
		}
	}
	return User{}, false
}

// userList names the users for an error message.
func userList(users []User) string {
	var b strings.Builder
	for i, u := range users {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(u.ID + " (" + u.Email + ")")
	}
	return b.String()
}

// workosUser stands in for GET https://api.workos.com/user_management/users/{id}: it answers with the WorkOS user
// object of a known user for requests bearing the server's API key, like WorkOS does (401 without a valid key, 404
// for an unknown user).
func (s *Server) workosUser(w http.ResponseWriter, r *http.Request) {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(s.apiKey)) != 1 {
		body, _ := json.Marshal(map[string]string{"message": "Unauthorized"})
		writeJSON(w, http.StatusUnauthorized, body)
		return
	}
	id := r.PathValue("id")
	u, found := s.findUser(id)
	if !found || u.ID != id {
		body, _ := json.Marshal(map[string]string{"code": "entity_not_found", "message": fmt.Sprintf("User not found: '%s'.", id), "entity_id": id})
		writeJSON(w, http.StatusNotFound, body)
		return
	}
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05.000Z")
	body, _ := json.Marshal(map[string]any{
		"object":              "user",
		"id":                  u.ID,
		"email":               u.Email,
		"email_verified":      true,
		"first_name":          u.FirstName,
		"last_name":           u.LastName,
		"name":                u.Name(),
		"profile_picture_url": nil,
		"last_sign_in_at":     s.started.Format("2006-01-02T15:04:05.000Z"),
		"external_id":         nil,
		"metadata":            map[string]string{},
		"locale":              nil,
		"created_at":          created,
		"updated_at":          created,
	})
	writeJSON(w, http.StatusOK, body)
}
