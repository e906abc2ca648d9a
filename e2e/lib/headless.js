// Following an authorization request's redirects without a browser: what a user agent does when the sign-in and
// consent steps need no input (or a choice given in advance: a user to sign in as, a consent decision), with a cookie
// jar so that the authorization server recognises its own interaction.

/** A cookie jar for one origin: enough of RFC 6265 for an authorization server's session and interaction cookies. */
export class CookieJar {
  #cookies = new Map(); // name + '\0' + path → {name, value, path, expires}

  /** Stores the Set-Cookie headers of a response to a request for url. */
  store(url, response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const cookie = { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), path: defaultPath(url), expires: Infinity };
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path' && v.trim().startsWith('/')) cookie.path = v.trim();
        if (key === 'max-age') cookie.expires = Date.now() + Number(v) * 1000;
        if (key === 'expires' && cookie.expires === Infinity) cookie.expires = Date.parse(v);
      }
      const key = `${cookie.name}\0${cookie.path}`;
      if (cookie.expires <= Date.now()) this.#cookies.delete(key);
      else this.#cookies.set(key, cookie);
    }
  }

  /** Returns the Cookie header for a request to url, or undefined. */
  header(url) {
    const path = new URL(url).pathname;
    const now = Date.now();
    const sent = [...this.#cookies.values()]
      .filter((c) => c.expires > now && pathMatches(path, c.path))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`);
    return sent.length ? sent.join('; ') : undefined;
  }
}

function defaultPath(url) {
  const path = new URL(url).pathname;
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/**
 * Opens authorizationURL and follows redirects (with a cookie jar) until one points at redirectURI, which is not
 * requested. Returns that URL's query parameters (code, state, iss, or error). Throws on a page that is not a redirect
 * and after 20 redirects.
 *
 * @param {string|URL} authorizationURL
 * @param {string|URL} redirectURI
 * @param {object} [opts]
 * @param {CookieJar} [opts.jar] a jar to keep the session in, e.g. to sign in once for several clients
 * @param {Array<{method: string, url: string, status: number}>} [opts.trail] receives every request made
 * @param {'allow'|'deny'} [opts.consent] answer a consent page (a form with a decision button, such as the gateway's
 *   in Option B and `gateway --dev`'s) with this decision, as a person would; without it, such a page is an error
 * @param {string} [opts.signIn] on a sign-in page that offers users to choose from (a form with user buttons, such as
 *   `gateway --dev`'s), choose the one with this id; without it, such a page is an error
 * @returns {Promise<URLSearchParams>}
 */
export async function followToRedirect(authorizationURL, redirectURI, opts = {}) {
  const target = new URL(redirectURI);
  const url = await followUntil(authorizationURL, (u) => u.origin === target.origin && u.pathname === target.pathname, opts);
  return url.searchParams;
}

/**
 * Like followToRedirect, but stops before requesting the first URL for which stop returns true, and returns that URL.
 * A test uses it to hold a sign-in's callback URL without opening it, e.g. to open it in another browser.
 *
 * @param {string|URL} authorizationURL
 * @param {(url: URL) => boolean} stop
 * @returns {Promise<URL>}
 */
export async function followUntil(authorizationURL, stop, { jar = new CookieJar(), trail = [], consent, signIn } = {}) {
  let url = new URL(authorizationURL);
  let post; // the answered form to send instead of a GET
  for (let hops = 0; hops < 20; hops++) {
    const headers = {};
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    const method = post ? 'POST' : 'GET';
    if (post) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers.origin = url.origin;
    }
    const response = await fetch(url, { method, redirect: 'manual', headers, body: post });
    post = undefined;
    trail.push({ method, url: url.href, status: response.status });
    jar.store(url, response);
    const location = response.headers.get('location');
    if (response.status < 300 || response.status > 399 || !location) {
      const body = await response.text();
      const form = response.status === 200 ? pageForm(body, { consent, signIn }) : undefined;
      if (form) {
        post = form.fields.toString();
        url = new URL(form.action, url);
        continue;
      }
      throw new Error(`${method} ${url.href}: ${response.status}, not a redirect: ${body.slice(0, 500)}`);
    }
    await response.body?.cancel();
    url = new URL(location, url);
    if (stop(url)) return url;
  }
  throw new Error(`more than 20 redirects from ${authorizationURL}`);
}

/**
 * Reads a page's POST form (its action and hidden fields) and answers it as a person would: a consent page (decision
 * buttons) with consent, a sign-in page (user buttons) by choosing the user signIn. Returns undefined for another
 * page, or when the answer it needs was not given (or the user is not offered).
 */
function pageForm(html, { consent, signIn }) {
  const form = /<form method="post" action="([^"]*)">([\s\S]*?)<\/form>/.exec(html);
  if (!form) return undefined;
  const unescape = (s) => s.replace(/&#43;/g, '+').replace(/&amp;/g, '&').replace(/&#34;/g, '"').replace(/&#39;/g, "'");
  const fields = new URLSearchParams();
  for (const m of form[2].matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) fields.set(m[1], unescape(m[2]));
  if (consent && /name="decision"/.test(form[2])) {
    fields.set('decision', consent);
  } else if (signIn && [...form[2].matchAll(/name="user" value="([^"]*)"/g)].some((m) => unescape(m[1]) === signIn)) {
    fields.set('user', signIn);
  } else {
    return undefined;
  }
  return { action: unescape(form[1]), fields };
}
