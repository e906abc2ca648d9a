package main

import (
	"log/slog"
	"reflect"

	"github.com/mcp-gateway/gateway/cmd/internal/envname"
	"github.com/mcp-gateway/gateway/proxy/config"
)

// devVariables are the variables the gateway reads outside config.Env: development mode's.
var devVariables = []string{"GATEWAY_DEV", "GATEWAY_DEV_ISSUER_ADDR", "GATEWAY_DEV_TOOLS_ADDR", "GATEWAY_DEV_AUTOLOGIN"}

// unknownVariables returns, sorted by name, every variable in environ whose name starts with GATEWAY_ (in any letter
// case) and that the gateway does not read, each with the closest name it does read: most often a misspelling that
// leaves a setting at its default. The known names are the env tags of config.Env and devVariables. Other names are
// not checked: the gateway shares its environment with the mcp-use example's and the tool service's variables.
func unknownVariables(environ map[string]string) []envname.Unknown {
	known := append(envname.Tags(reflect.TypeFor[config.Env]()), devVariables...)
	return envname.Find(environ, []string{"GATEWAY_"}, known)
}

// logWarnings logs, once at start, what in the configuration works but is unsafe or most likely a mistake: every
// unknown GATEWAY_* variable in environ, and identity headers forwarded without a signature when
// GATEWAY_IDENTITY_SECRET is not set. Neither stops the gateway.
func logWarnings(log *slog.Logger, cfg *config.Config, environ map[string]string) {
	for _, u := range unknownVariables(environ) {
		log.Warn("unknown variable: the gateway does not read it, so its value is ignored", "name", u.Name, "closest_known", u.Suggestion)
	}
	if cfg.IdentitySecret == "" {
		log.Warn("GATEWAY_IDENTITY_SECRET is not set: identity headers are forwarded unsigned, so the upstream cannot tell " +
			"them from forged ones and must be reachable from the gateway alone; set the same secret on the gateway and " +
			"the upstream (openssl rand -base64 32)")
	}
	if cfg.AllowUpgrade {
		log.Warn("GATEWAY_ALLOW_UPGRADE is true: an authenticated request that upgrades becomes a two-way tunnel the gateway " +
			"no longer inspects (not even expiry)")
	}
}
