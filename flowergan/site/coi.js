// Cross-origin isolation for hosts that cannot send headers (GitHub Pages, buckets,
// `python -m http.server`): this service worker re-serves the site's responses with COOP and
// COEP added, which makes the page `crossOriginIsolated`, which lets onnxruntime-web run on
// several threads. flowers.js registers it and reloads once on the first visit (a page gets
// its isolation from the response that loaded it). A host that sends the headers itself never
// needs it. The same idea as the npm package coi-serviceworker (MIT), written short here.
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  // A request the browser may only answer from its cache (devtools) is left alone.
  if (request.cache === "only-if-cached" && request.mode !== "same-origin") return;
  event.respondWith(
    fetch(request).then((response) => {
      if (response.status === 0) return response; // opaque: its headers cannot be changed
      const headers = new Headers(response.headers);
      headers.set("Cross-Origin-Opener-Policy", "same-origin");
      headers.set("Cross-Origin-Embedder-Policy", "require-corp");
      headers.set("Cross-Origin-Resource-Policy", "cross-origin");
      return new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    }),
  );
});
