import { useEffect, useState } from 'react';

// Hash routing: the backend serves the API on the same origin, and page paths such as
// /events/<id> would collide with API paths, so every page lives after the '#'.

export type Route =
  | { name: 'events' }
  | { name: 'event'; id: string }
  | { name: 'bookings' }
  | { name: 'booking'; id: string; token?: string }
  | { name: 'signin'; next?: string }
  | { name: 'signup'; next?: string }
  | { name: 'admin' }
  | { name: 'adminLocations' }
  | { name: 'adminNewEvent' }
  | { name: 'notFound'; path: string };

export function parseHash(hash: string): Route {
  let raw = hash.startsWith('#') ? hash.slice(1) : hash;
  if (!raw.startsWith('/')) raw = `/${raw}`;
  const q = raw.indexOf('?');
  const pathPart = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  const segs = pathPart.split('/').filter(Boolean);
  let parts: string[];
  try {
    parts = segs.map((s) => decodeURIComponent(s));
  } catch {
    return { name: 'notFound', path: pathPart };
  }
  const next = safeNext(params.get('next'));
  const [a, b, c] = parts;
  switch (parts.length) {
    case 0:
      return { name: 'events' };
    case 1:
      if (a === 'events') return { name: 'events' };
      if (a === 'bookings') return { name: 'bookings' };
      if (a === 'signin') return next ? { name: 'signin', next } : { name: 'signin' };
      if (a === 'signup') return next ? { name: 'signup', next } : { name: 'signup' };
      if (a === 'admin') return { name: 'admin' };
      break;
    case 2:
      if (a === 'events' && b) return { name: 'event', id: b };
      if (a === 'bookings' && b) {
        const token = params.get('token');
        return token ? { name: 'booking', id: b, token } : { name: 'booking', id: b };
      }
      if (a === 'admin' && b === 'locations') return { name: 'adminLocations' };
      if (a === 'admin' && b === 'events') return { name: 'admin' };
      break;
    case 3:
      if (a === 'admin' && b === 'events' && c === 'new') return { name: 'adminNewEvent' };
      break;
  }
  return { name: 'notFound', path: pathPart };
}

/** Only in-app hash paths may be a `next` target, never an outside URL. */
function safeNext(next: string | null): string | undefined {
  if (!next) return undefined;
  return next.startsWith('#/') ? next : undefined;
}

export function href(route: Route): string {
  const enc = encodeURIComponent;
  switch (route.name) {
    case 'events':
      return '#/';
    case 'event':
      return `#/events/${enc(route.id)}`;
    case 'bookings':
      return '#/bookings';
    case 'booking':
      return `#/bookings/${enc(route.id)}${route.token ? `?token=${enc(route.token)}` : ''}`;
    case 'signin':
      return route.next ? `#/signin?next=${enc(route.next)}` : '#/signin';
    case 'signup':
      return route.next ? `#/signup?next=${enc(route.next)}` : '#/signup';
    case 'admin':
      return '#/admin';
    case 'adminLocations':
      return '#/admin/locations';
    case 'adminNewEvent':
      return '#/admin/events/new';
    case 'notFound':
      return `#${route.path}`;
  }
}

export function navigate(to: Route | string): void {
  const target = typeof to === 'string' ? to : href(to);
  if (window.location.hash === target) return;
  window.location.hash = target;
}

export function useRoute(): Route {
  const [route, setRoute] = useState<Route>(() => parseHash(window.location.hash));
  useEffect(() => {
    const onChange = () => {
      setRoute(parseHash(window.location.hash));
      window.scrollTo(0, 0);
    };
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

/** Whether a nav link for `target` should look current while `route` is shown. */
export function isSection(route: Route, target: 'events' | 'bookings' | 'admin' | 'signin' | 'signup'): boolean {
  switch (target) {
    case 'events':
      return route.name === 'events' || route.name === 'event';
    case 'admin':
      return route.name === 'admin' || route.name === 'adminLocations' || route.name === 'adminNewEvent';
    default:
      return route.name === target;
  }
}
