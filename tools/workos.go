package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxWorkOSResponse bounds how much of a WorkOS response is read; a user object is a few hundred bytes.
const maxWorkOSResponse = 1 << 20

// workos fetches user objects from the WorkOS User Management API for get-workos-user.
type workos struct {
	client  *http.Client
	logger  *slog.Logger
	baseURL string
	apiKey  string
	timeout time.Duration
}

// toolError is a tool failure: Error is the client-safe text the caller sees, cause what is logged.
type toolError struct {
	msg   string
	cause error
}

func (e *toolError) Error() string { return e.msg }
func (e *toolError) Unwrap() error { return e.cause }

// errNoAPIKey is the tool error for get-workos-user when no API key is configured.
var errNoAPIKey = errors.New("WorkOS API key is not configured: set MCP_USE_OAUTH_WORKOS_API_KEY (or WORKOS_API_KEY) " +
	"on the tool service to use get-workos-user")

// fetchFailed returns the tool error for a failed fetch; what follows the seed's prefix must be safe to show.
func fetchFailed(what string, cause error) error {
	return &toolError{msg: "Failed to fetch user from WorkOS: " + what, cause: cause}
}

func (w *workos) getUser(ctx context.Context, req *mcp.CallToolRequest) (WorkOSUser, error) {
	id, err := callerIdentity(req)
	if err != nil {
		return nil, err
	}
	if w.apiKey == "" {
		return nil, errNoAPIKey
	}
	user, err := w.fetchUser(ctx, id.UserID)
	if err != nil {
		w.logger.LogAttrs(ctx, slog.LevelWarn, "get-workos-user failed",
			slog.String("user_id", id.UserID), slog.String("error", err.Error()), slog.Any("cause", errors.Unwrap(err)))
		return nil, err
	}
	return user, nil
}

// fetchUser GETs {baseURL}/user_management/users/{userID}. Every error it returns is a *toolError.
func (w *workos) fetchUser(ctx context.Context, userID string) (WorkOSUser, error) {
	if userID == "." || userID == ".." {
		// PathEscape leaves dots alone, and a dot segment would address another path.
		return nil, fetchFailed("invalid user id", fmt.Errorf("user id %q is a dot segment", userID))
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()

	u := strings.TrimRight(w.baseURL, "/") + "/user_management/users/" + url.PathEscape(userID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fetchFailed("invalid WorkOS API URL", err)
	}
	req.Header.Set("Authorization", "Bearer "+w.apiKey)
	req.Header.Set("Accept", "application/json")

	resp, err := w.client.Do(req)
	if err != nil {
		// The error names the URL but never the key, which travels in a header; it is logged, not shown.
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fetchFailed("the request timed out", err)
		}
		return nil, fetchFailed("the WorkOS API could not be reached", err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		status := strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
		return nil, fetchFailed(status, fmt.Errorf("GET %s: %s", req.URL.Redacted(), resp.Status))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWorkOSResponse+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fetchFailed("the request timed out", err)
		}
		return nil, fetchFailed("the response could not be read", err)
	}
	if len(body) > maxWorkOSResponse {
		return nil, fetchFailed("the response is too large", fmt.Errorf("response exceeds %d bytes", maxWorkOSResponse))
	}
	var user WorkOSUser
	if err := json.Unmarshal(body, &user); err != nil || user == nil {
		if err == nil {
			err = errors.New("response is null")
		}
		return nil, fetchFailed("the response is not a JSON object", err)
	}
	return user, nil
}
