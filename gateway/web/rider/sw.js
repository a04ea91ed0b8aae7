// The rider app's service worker: keeps the app shell so the app opens, and shows ride codes,
// with no network at all (a phone in a tunnel still gets through the gate). The code needs only
// what IndexedDB holds (credential and device key); API answers are never cached here.
//
// The gateway writes the shell's version (a digest of every shell file) and the file list into
// this file when it serves it (gateway/src/api/app.rs), so any change to the app is a new worker,
// which installs a new cache and removes the old one.

const VERSION = "__SHELL_VERSION__";
const CACHE = "turnpike-rider-" + VERSION;
const SHELL = [__SHELL_FILES__];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names
            .filter((n) => n.startsWith("turnpike-rider-") && n !== CACHE)
            .map((n) => caches.delete(n)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

/** How long a shell file may take from the network before the cached copy is used (a weak
 * signal in a tunnel answers slowly rather than not at all). */
const NETWORK_WAIT_MS = 3000;

function cached(path) {
  return caches.open(CACHE).then((cache) => cache.match(path));
}

// Shell files: the network first (so an online app is current), the cache when the network
// fails or is slow. Everything else (the API) goes to the network untouched.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const path = url.pathname === "/app" || url.pathname === "/app/index.html" ? "/app/" : url.pathname;
  if (!SHELL.includes(path)) return;
  const network = fetch(request);
  const slow = new Promise((resolve) => setTimeout(resolve, NETWORK_WAIT_MS)).then(() =>
    cached(path).then((hit) => hit || network),
  );
  event.respondWith(
    Promise.race([network, slow]).catch(() =>
      cached(path).then((hit) => hit || Response.error()),
    ),
  );
});
