#!/usr/bin/env node
// A stand-in for `myevents serve`, for working on the UI without building the Rust backend:
//
//   MYEVENTS_LISTEN=127.0.0.1:8181 MYEVENTS_WEB_DIR=$PWD/dist node e2e/mock-backend.mjs serve
//   MYEVENTS_BIN=$PWD/e2e/mock-backend.mjs npm run e2e     # the browser tests against it
//
// It follows the HTTP contract the UI is written against (web/README.md) in memory. It is not the
// product: the real end-to-end run uses the real binary.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

if (process.argv[2] !== 'serve') {
  console.log('usage: mock-backend.mjs serve   (env MYEVENTS_LISTEN, MYEVENTS_WEB_DIR, MYEVENTS_ADMIN_EMAIL, MYEVENTS_ADMIN_PASSWORD)');
  process.exit(process.argv[2] === '--help' || process.argv[3] === '--help' ? 0 : 2);
}

const [host, port] = (process.env.MYEVENTS_LISTEN ?? '127.0.0.1:8181').split(':');
const webDir = process.env.MYEVENTS_WEB_DIR ?? '';
const MAX_SEATS = 10;
// The real bookings service learns about a new event from the broker a moment later.
const PROPAGATION_MS = 300;

const users = new Map(); // id → user
const tokens = new Map(); // token → user id
const locations = new Map();
const events = new Map();
const inventory = new Map(); // event id → { capacity, available, status, since }
const bookings = new Map();
const idem = new Map();

function addUser(Email, Password, Name, Role) {
  const u = { ID: randomUUID(), Email, Name, Role, Password };
  users.set(u.ID, u);
  return u;
}
addUser(process.env.MYEVENTS_ADMIN_EMAIL ?? 'admin@example.com', process.env.MYEVENTS_ADMIN_PASSWORD ?? 'admin-password', 'Organiser', 'admin');

const pub = ({ Password, ...u }) => u;
const pick = (body, key) => body?.[key] ?? body?.[key.toLowerCase()];

function send(res, status, body, extra = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Access-Control-Allow-Origin': '*', ...extra });
  res.end(JSON.stringify(body));
}
const fail = (res, status, error, more = {}) => send(res, status, { error, ...more });

function who(req) {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
  if (!m) return null;
  const id = tokens.get(m[1]);
  return id ? users.get(id) : undefined;
}

async function readBody(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  if (!data) return {};
  return JSON.parse(data);
}

function salesOf(eventId) {
  const all = [...bookings.values()].filter((b) => b.EventID === eventId);
  return {
    EventID: eventId,
    SeatsSold: all.filter((b) => b.Status === 'active').reduce((n, b) => n + b.Seats, 0),
    Bookings: all.length,
    Cancellations: all.filter((b) => b.Status !== 'active').length,
  };
}

async function api(req, res, path, url) {
  const user = who(req);
  if (user === undefined) return fail(res, 401, 'your session has expired, sign in again');
  const admin = () => {
    if (!user) return fail(res, 401, 'sign in first'), false;
    if (user.Role !== 'admin') return fail(res, 403, 'only organisers can do that'), false;
    return true;
  };
  const m = req.method;
  let p;
  if (path === '/health/live' || path === '/health/ready') return send(res, 200, { status: 'ok' });
  if (path === '/users' && m === 'POST') {
    const b = await readBody(req);
    const Email = String(pick(b, 'Email') ?? '').trim();
    const Password = String(pick(b, 'Password') ?? '');
    if (!/^[^\s@]+@[^\s@]+$/.test(Email)) return fail(res, 422, 'enter a valid e-mail address');
    if (Password.length < 8) return fail(res, 422, 'the password needs at least 8 characters');
    if ([...users.values()].some((u) => u.Email.toLowerCase() === Email.toLowerCase())) return fail(res, 409, 'this e-mail address is already registered');
    return send(res, 201, pub(addUser(Email, Password, String(pick(b, 'Name') ?? ''), 'customer')));
  }
  if (path === '/auth/login' && m === 'POST') {
    const b = await readBody(req);
    const u = [...users.values()].find((x) => x.Email.toLowerCase() === String(pick(b, 'Email') ?? '').toLowerCase());
    if (!u || u.Password !== pick(b, 'Password')) return fail(res, 401, 'wrong e-mail or password');
    const t = randomUUID();
    tokens.set(t, u.ID);
    return send(res, 200, { Token: t, ExpiresAt: Math.floor(Date.now() / 1000) + 3600 });
  }
  if (path === '/users/me' && m === 'GET') return user ? send(res, 200, pub(user)) : fail(res, 401, 'sign in first');
  if (path === '/locations' && m === 'GET') return send(res, 200, [...locations.values()]);
  if (path === '/locations' && m === 'POST') {
    if (!admin()) return;
    const b = await readBody(req);
    const Halls = (pick(b, 'Halls') ?? []).map((h) => ({ name: h.name, location: h.location ?? '', capacity: Number(h.capacity) }));
    if (!pick(b, 'Name')) return fail(res, 422, 'a location needs a name');
    if (Halls.some((h) => !h.name || !(h.capacity > 0))) return fail(res, 422, 'every hall needs a name and a capacity above 0');
    const l = { ID: randomUUID(), Name: pick(b, 'Name'), Address: pick(b, 'Address') ?? '', Country: pick(b, 'Country') ?? '', OpenTime: pick(b, 'OpenTime') ?? 0, CloseTime: pick(b, 'CloseTime') ?? 0, Halls };
    locations.set(l.ID, l);
    return send(res, 201, l);
  }
  if (path === '/events' && m === 'GET') return send(res, 200, [...events.values()]);
  if (path === '/events' && m === 'POST') {
    if (!admin()) return;
    const b = await readBody(req);
    const loc = locations.get(pick(b, 'Location')?.ID ?? pick(b, 'Location')?.id);
    if (!loc) return fail(res, 422, 'unknown location');
    const hall = loc.Halls.find((h) => h.name === pick(b, 'Hall')) ?? (loc.Halls.length === 1 ? loc.Halls[0] : undefined);
    if (!hall) return fail(res, 422, 'unknown hall');
    const cap = pick(b, 'Capacity') ?? hall.capacity;
    if (cap > hall.capacity || cap <= 0) return fail(res, 422, `capacity must be between 1 and ${hall.capacity}`);
    if (!(pick(b, 'EndDate') > pick(b, 'StartDate'))) return fail(res, 422, 'the end must be after the start');
    const perCustomer = pick(b, 'SeatsPerCustomer') ?? undefined;
    if (perCustomer !== undefined && !(Number.isInteger(perCustomer) && perCustomer >= 1 && perCustomer <= cap)) {
      return fail(res, 422, `SeatsPerCustomer must be from 1 to the event's capacity (${cap}), not ${perCustomer}`);
    }
    const e = { ID: randomUUID(), Name: pick(b, 'Name'), Duration: pick(b, 'Duration'), StartDate: pick(b, 'StartDate'), EndDate: pick(b, 'EndDate'), Location: loc, Hall: hall.name, Capacity: cap, Status: 'active', SeatsPerCustomer: perCustomer };
    events.set(e.ID, e);
    inventory.set(e.ID, { capacity: cap, available: cap, status: 'active', since: Date.now() + PROPAGATION_MS });
    return send(res, 201, e);
  }
  if ((p = /^\/events\/([^/]+)$/.exec(path))) {
    const e = events.get(decodeURIComponent(p[1]));
    if (!e) return fail(res, 404, 'no such event');
    if (m === 'GET') return send(res, 200, e);
    if (m === 'DELETE') {
      if (!admin()) return;
      e.Status = 'cancelled';
      const inv = inventory.get(e.ID);
      inv.status = 'cancelled';
      for (const bk of bookings.values()) if (bk.EventID === e.ID && bk.Status === 'active') bk.Status = 'event_cancelled';
      return send(res, 200, e);
    }
  }
  if ((p = /^\/events\/([^/]+)\/availability$/.exec(path)) && m === 'GET') {
    const id = decodeURIComponent(p[1]);
    const inv = inventory.get(id);
    if (!inv || inv.since > Date.now()) return fail(res, 404, 'this event is not on sale yet');
    return send(res, 200, { EventID: id, Capacity: inv.capacity, Available: inv.available, Status: inv.status, MaxSeatsPerBooking: MAX_SEATS });
  }
  if ((p = /^\/events\/([^/]+)\/sales$/.exec(path)) && m === 'GET') {
    if (!admin()) return;
    return send(res, 200, salesOf(decodeURIComponent(p[1])));
  }
  if (path === '/sales' && m === 'GET') {
    if (!admin()) return;
    return send(res, 200, [...events.keys()].map(salesOf));
  }
  if ((p = /^\/events\/([^/]+)\/bookings$/.exec(path)) && m === 'POST') {
    const id = decodeURIComponent(p[1]);
    const key = req.headers['idempotency-key'];
    if (key && idem.has(key)) return send(res, 201, idem.get(key));
    const inv = inventory.get(id);
    if (!inv || inv.since > Date.now()) return fail(res, 404, 'no such event');
    const b = await readBody(req);
    const seats = Number(b.seats ?? b.Seats);
    if (!Number.isInteger(seats) || seats < 1 || seats > MAX_SEATS) return fail(res, 422, `seats must be between 1 and ${MAX_SEATS}`);
    const email = user ? user.Email : String(b.email ?? b.Email ?? '');
    if (!user && !/^[^\s@]+@[^\s@]+$/.test(email)) return fail(res, 422, 'enter a valid e-mail address or sign in');
    if (inv.status === 'cancelled') return fail(res, 409, 'this event has been cancelled', { Available: 0 });
    if (inv.available < seats) return fail(res, 409, 'not enough seats left', { Available: inv.available });
    inv.available -= seats;
    const bk = { ID: randomUUID(), EventID: id, EventName: events.get(id)?.Name, Seats: seats, Date: Math.floor(Date.now() / 1000), Status: 'active', UserID: user?.ID ?? null, Email: email };
    bookings.set(bk.ID, bk);
    if (key) idem.set(key, bk);
    return send(res, 201, bk);
  }
  if (path === '/bookings' && m === 'GET') {
    if (!user) return fail(res, 401, 'sign in first');
    const ev = url.searchParams.get('event');
    let list = [...bookings.values()];
    if (user.Role !== 'admin') list = list.filter((b) => b.UserID === user.ID);
    if (ev) list = list.filter((b) => b.EventID === ev);
    return send(res, 200, list);
  }
  if ((p = /^\/bookings\/([^/]+)$/.exec(path))) {
    const bk = bookings.get(decodeURIComponent(p[1]));
    if (!bk) return fail(res, 404, 'no such booking');
    if (!user) return fail(res, 401, 'sign in first');
    if (user.Role !== 'admin' && bk.UserID !== user.ID) return fail(res, 403, 'this is not your booking');
    if (m === 'GET') return send(res, 200, bk);
    if (m === 'DELETE') {
      if (bk.Status === 'active') {
        bk.Status = 'cancelled';
        inventory.get(bk.EventID).available += bk.Seats;
      }
      return send(res, 200, bk);
    }
  }
  return fail(res, 404, 'not found');
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' };

async function serveStatic(res, path) {
  const rel = normalize(path === '/' ? '/index.html' : path).replace(/^(\.\.[/\\])+/, '');
  try {
    const body = await readFile(join(webDir, rel));
    res.writeHead(200, { 'Content-Type': TYPES[extname(rel)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    fail(res, 404, 'not found');
  }
}

createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  try {
    if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/index.html' || url.pathname.startsWith('/assets/'))) {
      return await serveStatic(res, url.pathname);
    }
    await api(req, res, url.pathname, url);
  } catch (err) {
    fail(res, err instanceof SyntaxError ? 400 : 500, err instanceof SyntaxError ? 'the request body is not valid JSON' : String(err));
  }
}).listen(Number(port), host, () => console.log(`mock backend on http://${host}:${port}`));
