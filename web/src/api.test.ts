import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, api, bookingFailedForGood, describeStatus, errorMessage, newIdempotencyKey, parseApiError, tokenStore } from './api';
import { saleState } from './availability';

describe('parseApiError', () => {
  it('uses the error text of the API', () => {
    const e = parseApiError(422, '{"error":"seats must be between 1 and 10"}');
    expect(e.status).toBe(422);
    expect(e.message).toBe('Seats must be between 1 and 10.');
  });

  it('keeps the seats still available on a booking conflict', () => {
    const e = parseApiError(409, '{"error": "not enough seats left.", "Available": 3}');
    expect(e.message).toBe('Not enough seats left.');
    expect(e.available).toBe(3);
  });

  it('falls back to words for a body that is not the API error shape', () => {
    expect(parseApiError(502, '<html><body>Bad Gateway</body></html>').message).toBe(describeStatus(502));
    expect(parseApiError(429, '').message).toMatch(/too many attempts/i);
    expect(parseApiError(404, '{"detail": 1}').message).toBe('Not found.');
    expect(parseApiError(400, '{broken').message).toBe(describeStatus(400));
  });

  it('has words for unusual statuses too', () => {
    expect(describeStatus(418)).toContain('418');
    expect(describeStatus(599)).toContain('599');
  });
});

describe('request', () => {
  const memory = new Map<string, string>();
  beforeEach(() => {
    memory.clear();
    tokenStore.useStorage({
      getItem: (k) => memory.get(k) ?? null,
      setItem: (k, v) => void memory.set(k, v),
      removeItem: (k) => void memory.delete(k),
    });
  });
  afterEach(() => vi.unstubAllGlobals());

  const answer = (status: number, body: unknown) =>
    vi.fn(async () => new Response(typeof body === 'string' ? body : JSON.stringify(body), { status }));

  it('sends the bearer token and the idempotency key when booking', async () => {
    tokenStore.set('tok123', Date.now() / 1000 + 3600);
    const fetch = answer(201, { ID: 'b1', Seats: 2 });
    vi.stubGlobal('fetch', fetch);
    const b = await api.book('ev 1', 2, undefined, 'key-1');
    expect(b.ID).toBe('b1');
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/events/ev%201/bookings');
    expect(init.method).toBe('POST');
    const headers = init.headers as Record<string, string>;
    expect(headers.Authorization).toBe('Bearer tok123');
    expect(headers['Idempotency-Key']).toBe('key-1');
    expect(JSON.parse(init.body as string)).toEqual({ Seats: 2 });
  });

  it('sends the guest e-mail when signed out', async () => {
    const fetch = answer(201, { ID: 'b2' });
    vi.stubGlobal('fetch', fetch);
    await api.book('e', 1, 'guest@example.com', 'k');
    const init = (fetch.mock.calls[0] as unknown as [string, RequestInit])[1];
    expect((init.headers as Record<string, string>).Authorization).toBeUndefined();
    expect(JSON.parse(init.body as string)).toEqual({ Seats: 1, Email: 'guest@example.com' });
  });

  it('throws an ApiError with the server text and forgets a rejected token', async () => {
    tokenStore.set('old');
    vi.stubGlobal('fetch', answer(401, { error: 'token expired' }));
    const err = await api.me().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(401);
    expect(errorMessage(err)).toBe('Token expired.');
    expect(tokenStore.get()).toBeNull();
  });

  it('turns a network failure into words', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    const err = await api.listEvents().catch((e: unknown) => e);
    expect((err as ApiError).status).toBe(0);
    expect(errorMessage(err)).toMatch(/cannot reach the server/i);
  });

  it('treats a null list as empty', async () => {
    vi.stubGlobal('fetch', answer(200, 'null'));
    expect(await api.listEvents()).toEqual([]);
  });

  it('drops an expired token', () => {
    tokenStore.set('t', 1000);
    expect(tokenStore.get(999)).toBe('t');
    expect(tokenStore.get(1000)).toBeNull();
  });
});

describe('newIdempotencyKey', () => {
  it('makes different keys', () => {
    const keys = new Set(Array.from({ length: 50 }, newIdempotencyKey));
    expect(keys.size).toBe(50);
  });
});

describe('bookingFailedForGood', () => {
  it('is true after a refusal only: a 5xx or no answer keeps the key for the retry', () => {
    expect(bookingFailedForGood(new ApiError(409, 'sold out'))).toBe(true);
    expect(bookingFailedForGood(new ApiError(422, 'too many seats'))).toBe(true);
    expect(bookingFailedForGood(new ApiError(503, 'not finished in time'))).toBe(false);
    expect(bookingFailedForGood(new ApiError(0, 'no answer'))).toBe(false);
    expect(bookingFailedForGood(new Error('offline'))).toBe(false);
  });
});

describe('saleState', () => {
  const ev = { Status: 'active' as const, Capacity: 10 };
  const avail = (Available: number, extra: object = {}) => ({ EventID: 'e', Capacity: 10, Available, Status: 'active' as const, ...extra });

  it('is open with the seats left and the per-booking maximum', () => {
    expect(saleState(ev, avail(4, { MaxSeatsPerBooking: 6 }))).toEqual({ kind: 'open', available: 4, capacity: 10, max: 6 });
    expect(saleState(ev, avail(4))).toMatchObject({ max: 10 });
  });

  it('is sold out at zero seats', () => {
    expect(saleState(ev, avail(0)).kind).toBe('soldout');
  });

  it('is cancelled when either the event or the availability says so', () => {
    expect(saleState({ ...ev, Status: 'cancelled' }, avail(5)).kind).toBe('cancelled');
    expect(saleState(ev, avail(5, { Status: 'cancelled' })).kind).toBe('cancelled');
  });

  it('is not yet on sale while the bookings service does not know the event', () => {
    expect(saleState(ev, new ApiError(404, 'unknown event')).kind).toBe('pending');
  });

  it('reports other failures', () => {
    expect(saleState(ev, new ApiError(500, 'boom')).kind).toBe('unknown');
  });
});
