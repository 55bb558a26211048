import { describe, expect, it } from 'vitest';
import { href, parseHash, type Route } from './router';

describe('parseHash', () => {
  it('shows the event list for an empty or root hash', () => {
    expect(parseHash('')).toEqual({ name: 'events' });
    expect(parseHash('#')).toEqual({ name: 'events' });
    expect(parseHash('#/')).toEqual({ name: 'events' });
    expect(parseHash('#/events')).toEqual({ name: 'events' });
  });

  it('reads an event id, decoding it', () => {
    expect(parseHash('#/events/abc123')).toEqual({ name: 'event', id: 'abc123' });
    expect(parseHash('#/events/a%2Fb%20c')).toEqual({ name: 'event', id: 'a/b c' });
  });

  it('tolerates a missing leading slash and a trailing one', () => {
    expect(parseHash('#bookings')).toEqual({ name: 'bookings' });
    expect(parseHash('#/bookings/')).toEqual({ name: 'bookings' });
    expect(parseHash('#/bookings/b1?token=abc')).toEqual({ name: 'booking', id: 'b1', token: 'abc' });
    expect(parseHash('#/bookings/b1')).toEqual({ name: 'booking', id: 'b1' });
  });

  it('knows the organiser pages', () => {
    expect(parseHash('#/admin')).toEqual({ name: 'admin' });
    expect(parseHash('#/admin/locations')).toEqual({ name: 'adminLocations' });
    expect(parseHash('#/admin/events/new')).toEqual({ name: 'adminNewEvent' });
  });

  it('keeps an in-app next target for sign-in and drops an outside one', () => {
    expect(parseHash('#/signin?next=%23%2Fevents%2F42')).toEqual({ name: 'signin', next: '#/events/42' });
    expect(parseHash('#/signin?next=https%3A%2F%2Fevil.example')).toEqual({ name: 'signin' });
    expect(parseHash('#/signup')).toEqual({ name: 'signup' });
  });

  it('reports unknown pages', () => {
    expect(parseHash('#/nope')).toEqual({ name: 'notFound', path: '/nope' });
    expect(parseHash('#/events/1/extra')).toEqual({ name: 'notFound', path: '/events/1/extra' });
    expect(parseHash('#/events/%E0%A4%A')).toEqual({ name: 'notFound', path: '/events/%E0%A4%A' });
  });
});

describe('href', () => {
  const routes: Route[] = [
    { name: 'events' },
    { name: 'event', id: 'x y/z' },
    { name: 'bookings' },
    { name: 'booking', id: 'b 1', token: 'abc' },
    { name: 'signin', next: '#/events/1' },
    { name: 'signup' },
    { name: 'admin' },
    { name: 'adminLocations' },
    { name: 'adminNewEvent' },
  ];

  it.each(routes)('round-trips $name through parseHash', (route) => {
    expect(parseHash(href(route))).toEqual(route);
  });
});
