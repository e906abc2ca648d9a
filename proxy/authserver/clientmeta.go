package authserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mcp-gateway/gateway/proxy/cimd"
	"github.com/mcp-gateway/gateway/proxy/clientaddr"
)

// Clients identified by a Client ID Metadata Document: an https client_id whose document the server fetches (package
// cimd), instead of a client id it sealed at registration.

// errLimited is what an admission refusal wraps.
var errLimited = errors.New("metadata document fetch limit reached")

// clientFor returns the registration of a client id at /authorize: a sealed one, or, with metadata documents on, the
// document at an https client id (fetched, or cached). Its errors are pages.
func (s *Server) clientFor(r *http.Request, clientID string) (reg registration, host string, e *oauthError) {
	if s.cimd == nil || !cimd.IsURL(clientID) {
		reg, e := s.seal.openClientID(clientID)
		if e != nil {
			return registration{}, "", pageError(http.StatusBadRequest, "Unknown application",
				"This gateway does not know the application that sent you here (its client id is not one this gateway issued). "+
					"Remove the server from the application and add it again so that it registers anew.")
		}
		return reg, "", nil
	}
	doc, err := s.cimd.Resolve(r.Context(), clientID, s.admitFetch(clientaddr.Key(r, s.cfg.TrustedProxies)))
	if err != nil {
		return registration{}, "", metadataDocumentError(err)
	}
	if doc.Stale != nil {
		s.note(r, false, slog.String("client_metadata", "stale"), slog.String("client_metadata_refetch", doc.Stale.Error()))
	}
	return registration{Name: doc.ClientName, RedirectURIs: doc.RedirectURIs, AuthMethod: "none"}, doc.Host, nil
}

// admitFetch is the admission check of a metadata document fetch caused by the client address addr: per minute,
// cimdPerAddr for the address and cimdPerHost for the host (cimdKnownPerHost, counted apart, for refetches of URLs
// whose last fetch gave a valid document: strangers naming made-up paths on a host cannot spend it); under way,
// cimdInflight for the address and cimdHostInflight for the host. A refused refetch of a known URL is answered with its
// last document (cimd.Document.Stale) for a while.
func (s *Server) admitFetch(addr string) cimd.Admit {
	return func(host string, known bool) (func(), error) {
		now := s.now()
		if ok, _ := s.limits.cimdByAddr.allow(addr, now); !ok {
			return nil, fmt.Errorf("%w for this address", errLimited)
		}
		byHost := s.limits.cimdByHost
		if known {
			byHost = s.limits.cimdKnownByHost
		}
		if ok, _ := byHost.allow(host, now); !ok {
			return nil, fmt.Errorf("%w for %s", errLimited, host)
		}
		doneAddr, ok := s.limits.cimdInflight.acquire(addr)
		if !ok {
			return nil, fmt.Errorf("%w: fetches under way for this address", errLimited)
		}
		doneHost, ok := s.limits.cimdHostInflight.acquire(host)
		if !ok {
			doneAddr()
			return nil, fmt.Errorf("%w: fetches under way from %s", errLimited, host)
		}
		return func() { doneHost(); doneAddr() }, nil
	}
}

// metadataDocumentError is the page for a metadata document that could not be used: a fixed text per kind of
// failure, the cause in the access line.
func metadataDocumentError(err error) *oauthError {
	cause := slog.String("cause", "client_metadata_document")
	detail := slog.String("err", err.Error())
	const again = " Nothing was done."
	switch {
	case errors.Is(err, cimd.ErrBusy):
		e := pageError(http.StatusServiceUnavailable, "Try again shortly",
			"This gateway is busy fetching application descriptions, or this network has asked for many of them. Nothing was done. Wait a minute and start again from your application.",
			cause, detail)
		e.RetryAfter = time.Minute
		return e
	case errors.Is(err, cimd.ErrInvalidURL):
		return pageError(http.StatusBadRequest, "Unknown application",
			"The application identifies itself with an address this gateway cannot use as its description (an https URL with a path, without a query or fragment)."+again,
			cause, detail)
	case errors.Is(err, cimd.ErrRefusedAddress):
		return pageError(http.StatusBadRequest, "Unknown application",
			"The application's description is on a private or local network address, which this gateway does not fetch from."+again,
			cause, detail)
	case errors.Is(err, cimd.ErrInvalidDocument):
		return pageError(http.StatusBadRequest, "Unknown application",
			"The application's description is not valid for its address (its client_id must be that address, with redirect_uris and no secret)."+again,
			cause, detail)
	case errors.Is(err, context.Canceled):
		return pageError(http.StatusBadRequest, "Cancelled", "The request was cancelled."+again, cause, detail)
	default:
		return pageError(http.StatusBadGateway, "Application description unavailable",
			"This gateway could not fetch the application's description from its address (no answer in time, an error, a redirect, or a document too large)."+again,
			cause, detail)
	}
}

// tokenClient returns the registration of a client id at /token: a sealed one, or, with metadata documents on, a
// public client for a well-formed https client id. The document is not fetched again: a code is bound to the client
// id it was issued to, which the document named when the person consented.
func (s *Server) tokenClient(clientID string) (registration, *oauthError) {
	if s.cimd == nil || !cimd.IsURL(clientID) {
		return s.seal.openClientID(clientID)
	}
	if _, err := cimd.CheckURL(clientID); err != nil {
		return registration{}, oauthErr(http.StatusUnauthorized, "invalid_client", "the client id is not a valid metadata document URL")
	}
	return registration{AuthMethod: "none"}, nil
}
