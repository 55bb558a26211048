import type { BookingStatus } from './types';

export interface FormatOptions {
  locale?: string;
  /** IANA zone; the browser's own when left out. Tests pin it. */
  timeZone?: string;
}

/** "Sat, 14 Jun 2025, 19:30" style: weekday, date and time in the viewer's locale. */
export function formatDateTime(unixSeconds: number, opts: FormatOptions = {}): string {
  if (!Number.isFinite(unixSeconds)) return '—';
  return new Intl.DateTimeFormat(opts.locale, {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    year: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    timeZone: opts.timeZone,
  }).format(new Date(unixSeconds * 1000));
}

export function formatTime(unixSeconds: number, opts: FormatOptions = {}): string {
  if (!Number.isFinite(unixSeconds)) return '—';
  return new Intl.DateTimeFormat(opts.locale, {
    hour: '2-digit',
    minute: '2-digit',
    timeZone: opts.timeZone,
  }).format(new Date(unixSeconds * 1000));
}

/** Start and end; the end shows only its time when both fall on the same calendar day. */
export function formatRange(start: number, end: number, opts: FormatOptions = {}): string {
  if (!Number.isFinite(end) || end <= start) return formatDateTime(start, opts);
  const day = (t: number) =>
    new Intl.DateTimeFormat('en-CA', { year: 'numeric', month: '2-digit', day: '2-digit', timeZone: opts.timeZone }).format(
      new Date(t * 1000),
    );
  const endText = day(start) === day(end) ? formatTime(end, opts) : formatDateTime(end, opts);
  return `${formatDateTime(start, opts)} – ${endText}`;
}

/** 150 → "2 h 30 min". */
export function formatDuration(minutes: number): string {
  if (!Number.isFinite(minutes) || minutes <= 0) return '—';
  const m = Math.round(minutes);
  const h = Math.floor(m / 60);
  const rest = m % 60;
  if (h === 0) return `${rest} min`;
  return rest === 0 ? `${h} h` : `${h} h ${rest} min`;
}

/** A location's opening hour (hours of the day) as "09:00". Strings are shown as they are. */
export function formatHour(hour: number | string | null | undefined): string {
  if (hour === null || hour === undefined || hour === '') return '—';
  if (typeof hour === 'string') return hour;
  return `${String(Math.floor(hour)).padStart(2, '0')}:00`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** Unix seconds → the value an `<input type="datetime-local">` shows, in the browser's zone. */
export function toDateTimeLocal(unixSeconds: number): string {
  const d = new Date(unixSeconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The value of an `<input type="datetime-local">` (local time) → Unix seconds, or null if empty/invalid. */
export function fromDateTimeLocal(value: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value.trim());
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x)));
  const date = new Date(y, mo - 1, d, h, mi, s);
  // Reject dates that JavaScript silently rolled over (31 February → 3 March).
  if (date.getMonth() !== mo - 1 || date.getDate() !== d) return null;
  return Math.floor(date.getTime() / 1000);
}

/** Whole minutes from start to end (Unix seconds); 0 if the end is not after the start. */
export function minutesBetween(start: number, end: number): number {
  return end > start ? Math.round((end - start) / 60) : 0;
}

export function seatsLeftText(n: number): string {
  if (n <= 0) return 'No seats left';
  return n === 1 ? '1 seat left' : `${n} seats left`;
}

export function seatsText(n: number): string {
  return n === 1 ? '1 seat' : `${n} seats`;
}

export function bookingStatusText(status: BookingStatus | string): string {
  switch (status) {
    case 'active':
      return 'Active';
    case 'cancelled':
      return 'Cancelled';
    case 'event_cancelled':
      return 'Event cancelled';
    default:
      return String(status);
  }
}
