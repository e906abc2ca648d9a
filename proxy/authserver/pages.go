package authserver

import (
	"html/template"
	"net/http"
)

// The pages the server shows to a person: the consent page and the message page of every error it does not send to
// the client.

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow {{.Client}}?</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
code{overflow-wrap:anywhere;background:#f3f3f3;padding:0 .2em}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.8rem}
.note{color:#555;font-size:.9rem}</style></head>
<body>
<h1>Allow <q>{{.Client}}</q> to use {{.ResourceName}}?</h1>
<p>The application <strong>{{.Client}}</strong> wants to sign you in to <code>{{.Resource}}</code> and act as you there.</p>
{{if .ClientHost}}<p>It identifies itself with a description published at <strong id="client-host">{{.ClientHost}}</strong>: allow only if you know that site as this application's.</p>{{end}}
{{if .Scopes}}<p>It asks for these permissions (scopes):</p>
<ul id="scopes">{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>{{else}}<p>It asks for no particular permissions (scopes).</p>{{end}}
<p>After you sign in at <code>{{.Upstream}}</code>, you will be sent to this address, which the application registered:</p>
<p><code id="redirect-uri">{{.RedirectURI}}</code></p>
<p class="note">The name is what the application says about itself. Allow only if you started this from an application you trust and the address above belongs to it.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.Request}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
`))

var messageTemplate = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// pageHeaders are the headers of every HTML page: never framed, never cached, nothing loaded.
func pageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: with it, browsers send the consent form with Origin: null
}
