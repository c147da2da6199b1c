// Loaded with `node --import` before Portkey's gateway starts (llmbench's P
// arm). It changes two things, and nothing else:
//
// 1. Loopback only: the gateway calls server.listen(port) with no host, that
//    is on every interface; here a listen on a bare port binds 127.0.0.1.
//
// 2. Streams on Node: the gateway appends its x-portkey-* headers to the
//    Response it got from fetch(), whose headers are immutable in Node's
//    fetch, so every streamed chat completion fails with "TypeError:
//    immutable" (Portkey-AI/gateway#1389, #1550). fetch() here returns the
//    same status, headers and body stream in a Response whose headers may be
//    changed. The body is passed through, not read or copied.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const cb = args.find((a) => typeof a === 'function');
    const port = Number(args[0]);
    return cb ? listen.call(this, port, '127.0.0.1', cb) : listen.call(this, port, '127.0.0.1');
  }
  return listen.apply(this, args);
};

const NativeResponse = globalThis.Response;
const nativeFetch = globalThis.fetch;
globalThis.fetch = async function (...args) {
  const r = await nativeFetch.apply(this, args);
  return new NativeResponse(r.body, {
    status: r.status,
    statusText: r.statusText,
    headers: new Headers(r.headers),
  });
};
