// The handshake as socket.io shows it (`socket.handshake`), from the JSON
// object the library reports (`auth`, `query`, `headers`, `address`, `url`,
// `issued`).

"use strict";

/** The library's handshake object (parsed) → socket.io's `socket.handshake`. */
function handshakeOf(hs) {
  const info = hs && typeof hs === "object" ? hs : {};
  const headers = info.headers || {};
  const issued = info.issued || Date.now();
  return {
    headers,
    time: new Date(issued).toString(),
    address: info.address,
    xdomain: !!headers.origin,
    secure: false,
    issued,
    url: info.url,
    query: info.query || {},
    auth: info.auth || {},
  };
}

module.exports = { handshakeOf };
