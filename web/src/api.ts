import type {
  Availability,
  Booking,
  Credentials,
  Location,
  LoginResult,
  MyEvent,
  NewBooking,
  NewEvent,
  NewLocation,
  NewUser,
  Sales,
  User,
} from './types';

/** An answer from the API that was not a success, or no answer at all (status 0). */
export class ApiError extends Error {
  readonly status: number;
  /** Seats still free, sent with a 409 on a booking. */
  readonly available?: number;

  constructor(status: number, message: string, available?: number) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.available = available;
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'The request was not understood.',
  401: 'Please sign in first.',
  403: 'You are not allowed to do that.',
  404: 'Not found.',
  408: 'The server took too long to answer.',
  409: 'That conflicts with the current state. Please reload and try again.',
  413: 'What you sent is too large.',
  422: 'Some values are not valid.',
  429: 'Too many attempts. Please wait a moment and try again.',
  500: 'Something went wrong on the server. Please try again.',
  502: 'The server is not reachable right now. Please try again.',
  503: 'The service is starting or busy. Please try again in a moment.',
  504: 'The server took too long to answer.',
};

/** The words to show for a status when the body says nothing useful. */
export function describeStatus(status: number): string {
  if (STATUS_TEXT[status]) return STATUS_TEXT[status];
  if (status >= 500) return `The server failed (HTTP ${status}). Please try again.`;
  return `The request failed (HTTP ${status}).`;
}

/**
 * Turns an error answer into an ApiError. The API sends `{"error": "..."}` (plus `Available` on a
 * booking conflict); anything else — an HTML page from a proxy, an empty body — falls back to words
 * chosen by status, never to raw markup.
 */
export function parseApiError(status: number, bodyText: string): ApiError {
  let message: string | undefined;
  let available: number | undefined;
  const trimmed = bodyText.trim();
  if (trimmed.startsWith('{')) {
    try {
      const body = JSON.parse(trimmed) as Record<string, unknown>;
      const text = body.error ?? body.Error ?? body.message;
      if (typeof text === 'string' && text.trim() !== '') message = text.trim();
      const avail = body.Available ?? body.available;
      if (typeof avail === 'number' && Number.isFinite(avail)) available = avail;
    } catch {
      // Not JSON after all: fall through to the status words.
    }
  }
  if (message && !/[.!?]$/.test(message)) message = `${capitalise(message)}.`;
  else if (message) message = capitalise(message);
  return new ApiError(status, message ?? describeStatus(status), available);
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** The message to show a person for any error thrown while talking to the API. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error && err.message) return err.message;
  return 'Something went wrong. Please try again.';
}

// ---- token storage -------------------------------------------------------------------------------

const TOKEN_KEY = 'myevents.token';
const EXPIRES_KEY = 'myevents.tokenExpiresAt';

interface KeyValue {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

function memoryStorage(): KeyValue {
  const m = new Map<string, string>();
  return {
    getItem: (k) => m.get(k) ?? null,
    setItem: (k, v) => void m.set(k, v),
    removeItem: (k) => void m.delete(k),
  };
}

function pickStorage(): KeyValue {
  try {
    if (typeof localStorage !== 'undefined') return localStorage;
  } catch {
    // localStorage can throw when storage is disabled; the session then lasts until reload.
  }
  return memoryStorage();
}

const listeners = new Set<() => void>();
let storage: KeyValue = pickStorage();

export const tokenStore = {
  get(now: number = Date.now() / 1000): string | null {
    const token = storage.getItem(TOKEN_KEY);
    if (!token) return null;
    const expires = Number(storage.getItem(EXPIRES_KEY));
    if (expires && expires <= now) {
      tokenStore.clear();
      return null;
    }
    return token;
  },
  set(token: string, expiresAt?: number): void {
    storage.setItem(TOKEN_KEY, token);
    if (expiresAt) storage.setItem(EXPIRES_KEY, String(expiresAt));
    else storage.removeItem(EXPIRES_KEY);
    listeners.forEach((l) => l());
  },
  clear(): void {
    const had = storage.getItem(TOKEN_KEY) !== null;
    storage.removeItem(TOKEN_KEY);
    storage.removeItem(EXPIRES_KEY);
    if (had) listeners.forEach((l) => l());
  },
  subscribe(listener: () => void): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
  /** For tests. */
  useStorage(s: KeyValue): void {
    storage = s;
  },
};

// ---- requests ------------------------------------------------------------------------------------

export interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  const token = tokenStore.get();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body, signal: opts.signal });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'Cannot reach the server. Check your connection and try again.');
  }
  const text = await res.text().catch(() => '');
  if (!res.ok) {
    // A token the server no longer accepts (expired, signing key rotated): forget it so the UI
    // shows the signed-out state instead of failing every call.
    if (res.status === 401 && token) tokenStore.clear();
    throw parseApiError(res.status, text);
  }
  if (text.trim() === '') return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(res.status, 'The server sent an answer that could not be read.');
  }
}

/**
 * Whether a booking that failed with `error` is over, so that the next try is a new booking with
 * a new `Idempotency-Key`. Only a refusal (4xx) is: after no answer, or a 5xx (a 503 may come
 * while the booking still commits), the next try keeps the key and learns what became of it.
 */
export function bookingFailedForGood(error: unknown): boolean {
  return error instanceof ApiError && error.status >= 400 && error.status < 500;
}

/** A random key for `Idempotency-Key`; crypto.randomUUID needs a secure context, so fall back. */
export function newIdempotencyKey(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') {
    try {
      return c.randomUUID();
    } catch {
      // not a secure context
    }
  }
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const enc = encodeURIComponent;

export const api = {
  listEvents: (signal?: AbortSignal) => request<MyEvent[]>('GET', '/events', { signal }).then(arr),
  getEvent: (id: string, signal?: AbortSignal) => request<MyEvent>('GET', `/events/${enc(id)}`, { signal }),
  createEvent: (e: NewEvent) => request<MyEvent>('POST', '/events', { body: e }),
  cancelEvent: (id: string) => request<MyEvent>('DELETE', `/events/${enc(id)}`),
  availability: (id: string, signal?: AbortSignal) =>
    request<Availability>('GET', `/events/${enc(id)}/availability`, { signal }),

  listLocations: (signal?: AbortSignal) => request<Location[]>('GET', '/locations', { signal }).then(arr),
  createLocation: (l: NewLocation) => request<Location>('POST', '/locations', { body: l }),

  book: (eventId: string, seats: number, email: string | undefined, idempotencyKey: string) =>
    request<Booking>('POST', `/events/${enc(eventId)}/bookings`, {
      body: (email ? { Seats: seats, Email: email } : { Seats: seats }) satisfies NewBooking,
      headers: { 'Idempotency-Key': idempotencyKey },
    }),
  listBookings: (eventId?: string, signal?: AbortSignal) =>
    request<Booking[]>('GET', eventId ? `/bookings?event=${enc(eventId)}` : '/bookings', { signal }).then(arr),
  /** A guest booking opens with its token; a member's with their sign-in. */
  getBooking: (id: string, token?: string, signal?: AbortSignal) =>
    request<Booking>('GET', `/bookings/${enc(id)}${token ? `?token=${enc(token)}` : ''}`, { signal }),
  cancelBooking: (id: string, token?: string) =>
    request<Booking>('DELETE', `/bookings/${enc(id)}${token ? `?token=${enc(token)}` : ''}`),

  register: (Email: string, Password: string, Name: string) =>
    request<User>('POST', '/users', { body: { Email, Password, Name } satisfies NewUser }),
  login: (Email: string, Password: string) =>
    request<LoginResult>('POST', '/auth/login', { body: { Email, Password } satisfies Credentials }),
  me: (signal?: AbortSignal) => request<User>('GET', '/users/me', { signal }),

  sales: (signal?: AbortSignal) => request<Sales[]>('GET', '/sales', { signal }).then(arr),
  eventSales: (id: string, signal?: AbortSignal) => request<Sales>('GET', `/events/${enc(id)}/sales`, { signal }),
};

/** Lists come back as arrays; a backend that answers `null` for an empty list is treated as []. */
function arr<T>(v: T[] | null | undefined): T[] {
  return Array.isArray(v) ? v : [];
}
