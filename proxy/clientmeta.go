package proxy

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mcp-gateway/gateway/proxy/authserver"
	"github.com/mcp-gateway/gateway/proxy/cimd"
	"github.com/mcp-gateway/gateway/proxy/config"
)

// clientMetadata returns Option B's resolver of Client ID Metadata Documents (GATEWAY_CIMD), or nil when they are off.
func clientMetadata(cfg *config.Config, now func() time.Time, log *slog.Logger) (*cimd.Resolver, error) {
	if !cfg.CIMD {
		return nil, nil
	}
	roots, err := CIMDRoots(cfg.CIMDCAFile)
	if err != nil {
		return nil, err
	}
	if cfg.InsecureCIMDAllowPrivate {
		log.Warn("GATEWAY_CIMD_ALLOW_PRIVATE=true: client metadata documents are fetched from loopback and private addresses too, " +
			"so anyone who can open the authorization page can make the gateway send requests into its network; for tests only")
	}
	return cimd.New(cimd.Options{InsecureAllowPrivate: cfg.InsecureCIMDAllowPrivate, RootCAs: roots, Now: now,
		CheckRedirectURI: authserver.CheckRedirectURI}), nil
}

// CIMDRoots returns the system's certificate authorities with those of the PEM file (GATEWAY_CIMD_CA_FILE) added, or
// nil (the system's) when file is empty.
func CIMDRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_CIMD_CA_FILE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("GATEWAY_CIMD_CA_FILE: %s holds no PEM certificate", file)
	}
	return pool, nil
}
