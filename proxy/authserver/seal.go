package authserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Lifetimes of sealed values.
const (
	stateTTL   = 10 * time.Minute    // from the redirect to the upstream until its callback
	codeTTL    = 10 * time.Minute    // from the callback until the token request
	pendingTTL = 15 * time.Minute    // the consent page's form
	consentTTL = 30 * 24 * time.Hour // a remembered consent
)

// subkey returns a 32-byte key for one purpose from Options.Key: SHA-256 of a purpose label and the key, as proxy
// derives its keys. It must stay as it is: client ids, which clients keep, are sealed under keys it derived, and any
// other derivation would make every registered client register again.
func subkey(key []byte, purpose string) []byte {
	k := sha256.Sum256([]byte("mcp-gateway/" + purpose + "\x00" + string(key)))
	return k[:]
}

// sealer seals and opens the values the server hands out. The purpose of a value is its additional data.
type sealer struct {
	aead   cipher.AEAD
	macKey []byte
}

func newSealer(key []byte) *sealer {
	enc := subkey(key, "facade-seal")
	block, _ := aes.NewCipher(enc) // 32 bytes: always valid
	aead, _ := cipher.NewGCM(block)
	return &sealer{aead: aead, macKey: subkey(key, "facade-mac")}
}

// seal encrypts and authenticates v (as JSON) for purpose.
func (s *sealer) seal(purpose string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("authserver: seal: " + err.Error()) // only plain structs are sealed
	}
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, b, []byte(purpose)))
}

// errSealed is returned for a value that was not sealed by this gateway for the purpose asked.
var errSealed = errors.New("not a value this gateway sealed for this purpose")

// open reverses seal into v.
func (s *sealer) open(purpose, sealed string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return errSealed
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], []byte(purpose))
	if err != nil {
		return errSealed
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return errSealed
	}
	return nil
}

// mac returns base64url(HMAC-SHA256) of purpose and value, for derived client secrets and CSRF tokens.
func (s *sealer) mac(purpose, value string) string {
	m := hmac.New(sha256.New, s.macKey)
	m.Write([]byte(purpose + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// macEqual compares a presented MAC with the expected one in constant time.
func macEqual(got, want string) bool {
	return len(got) == len(want) && hmac.Equal([]byte(got), []byte(want))
}

// registration is what a client id carries: the client as it registered.
type registration struct {
	Name         string   `json:"n,omitempty"`
	RedirectURIs []string `json:"r"`
	AuthMethod   string   `json:"a"` // none, client_secret_basic or client_secret_post
	IssuedAt     int64    `json:"t"`
}

// confidential reports whether the client authenticates with a secret.
func (r registration) confidential() bool { return r.AuthMethod != "none" }

// clientID seals reg into a client id.
func (s *sealer) clientID(reg registration) string {
	return clientIDPrefix + s.seal("client", reg)
}

// openClientID returns the registration a client id carries, or an invalid_client error.
func (s *sealer) openClientID(id string) (registration, *oauthError) {
	var reg registration
	unknown := oauthErr(http.StatusUnauthorized, "invalid_client", "unknown client: register with this gateway again")
	rest, ok := strings.CutPrefix(id, clientIDPrefix)
	if !ok || len(id) > maxClientIDLen || s.open("client", rest, &reg) != nil || len(reg.RedirectURIs) == 0 {
		return registration{}, unknown
	}
	return reg, nil
}

// clientSecret is the secret the gateway issues to a confidential registration: derived, so it needs no storage.
func (s *sealer) clientSecret(clientID string) string {
	return s.mac("client-secret", clientID)
}

// parseRegistration reads an RFC 7591 registration request and returns the registration to seal and the metadata to

// pendingState travels to the upstream and back in state: the client's request, sealed for the callback.
type pendingState struct {
	ID          string `json:"i"` // random: the single-use key
	ClientID    string `json:"c"`
	RedirectURI string `json:"r"`
	State       string `json:"s,omitempty"`
	Browser     string `json:"b"` // MAC of the browser cookie of the browser that started the sign-in
	Exp         int64  `json:"e"`
}

// wrappedCode is the code the client gets: the upstream code, bound to the client and its redirect URI.
type wrappedCode struct {
	Code        string `json:"u"`
	ClientID    string `json:"c"`
	RedirectURI string `json:"r"`
	Exp         int64  `json:"e"`
}

// pendingAuth is the consent form's sealed copy of the authorization request.
type pendingAuth struct {
	ClientID    string `json:"c"`
	Registered  string `json:"g"` // the registered redirect URI that RedirectURI matched
	RedirectURI string `json:"r"`
	Query       string `json:"q"`
	Exp         int64  `json:"e"`
}

// consentSet is the consent cookie: the (client, registered redirect URI) pairs, by digest, the user allowed in this
// browser.
type consentSet struct {
	Clients []string `json:"c"`
	Exp     int64    `json:"e"`
}

// consentDigest names a client and one of its registered redirect URIs in the consent cookie. Consent is given for
// the pair: allowing a client to send you back to one address does not allow it to send you to another it registered.
func consentDigest(clientID, registered string) string {
	h := sha256.Sum256([]byte(clientID + "\x00" + registered))
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

// withConsent returns set with digest d added (most recent last, at most maxRemembered).
func withConsent(set []string, d string) []string {
	out := slices.DeleteFunc(slices.Clone(set), func(s string) bool { return s == d })
	out = append(out, d)
	if len(out) > maxRemembered {
		out = out[len(out)-maxRemembered:]
	}
	return out
}
