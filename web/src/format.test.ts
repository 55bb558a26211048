import { describe, expect, it } from 'vitest';
import {
  bookingStatusText,
  formatDateTime,
  formatDuration,
  formatHour,
  formatRange,
  fromDateTimeLocal,
  minutesBetween,
  seatsLeftText,
  toDateTimeLocal,
} from './format';

const utc = { locale: 'en-GB', timeZone: 'UTC' };
// 2025-06-14 19:30:00 UTC, a Saturday.
const SAT_1930 = Date.UTC(2025, 5, 14, 19, 30) / 1000;

// ICU versions differ in punctuation ("Sat 14 Jun" vs "Sat, 14 Jun"), so check the pieces a reader
// needs rather than one exact string.
function expectShows(text: string, pieces: string[]) {
  for (const p of pieces) expect(text).toContain(p);
}

describe('formatDateTime', () => {
  it('shows weekday, date and 24-hour time in the given zone', () => {
    expectShows(formatDateTime(SAT_1930, utc), ['Sat', '14 Jun 2025', '19:30']);
  });

  it('honours the time zone', () => {
    expectShows(formatDateTime(SAT_1930, { locale: 'en-GB', timeZone: 'Asia/Tokyo' }), ['Sun', '15 Jun 2025', '04:30']);
  });

  it('shows a dash for a missing date rather than "Invalid Date"', () => {
    expect(formatDateTime(Number.NaN, utc)).toBe('—');
  });
});

describe('formatRange', () => {
  it('gives only the end time when the event ends the same day', () => {
    const [start, end] = formatRange(SAT_1930, SAT_1930 + 2 * 3600, utc).split(' – ');
    expectShows(start, ['Sat', '14 Jun 2025', '19:30']);
    expect(end).toBe('21:30');
  });

  it('gives the full end date when it ends on another day', () => {
    const [start, end] = formatRange(SAT_1930, SAT_1930 + 5 * 3600, utc).split(' – ');
    expectShows(start, ['Sat', '14 Jun 2025', '19:30']);
    expectShows(end, ['Sun', '15 Jun 2025', '00:30']);
  });

  it('ignores an end before the start', () => {
    expect(formatRange(SAT_1930, SAT_1930 - 60, utc)).toBe(formatDateTime(SAT_1930, utc));
  });
});

describe('datetime-local conversion', () => {
  it('round-trips through the input value', () => {
    const v = '2025-06-14T19:30';
    const ts = fromDateTimeLocal(v);
    expect(ts).not.toBeNull();
    expect(toDateTimeLocal(ts as number)).toBe(v);
  });

  it('reads the value as local time', () => {
    expect(fromDateTimeLocal('2025-06-14T19:30')).toBe(new Date(2025, 5, 14, 19, 30).getTime() / 1000);
  });

  it('accepts seconds', () => {
    expect(fromDateTimeLocal('2025-06-14T19:30:15')).toBe(new Date(2025, 5, 14, 19, 30, 15).getTime() / 1000);
  });

  it('rejects empty, malformed and impossible dates', () => {
    expect(fromDateTimeLocal('')).toBeNull();
    expect(fromDateTimeLocal('14/06/2025 19:30')).toBeNull();
    expect(fromDateTimeLocal('2025-02-31T10:00')).toBeNull();
  });

  it('counts whole minutes between start and end', () => {
    expect(minutesBetween(SAT_1930, SAT_1930 + 150 * 60)).toBe(150);
    expect(minutesBetween(SAT_1930, SAT_1930)).toBe(0);
    expect(minutesBetween(SAT_1930, SAT_1930 - 60)).toBe(0);
  });
});

describe('small texts', () => {
  it('formats durations', () => {
    expect(formatDuration(45)).toBe('45 min');
    expect(formatDuration(120)).toBe('2 h');
    expect(formatDuration(150)).toBe('2 h 30 min');
    expect(formatDuration(0)).toBe('—');
  });

  it('formats opening hours', () => {
    expect(formatHour(9)).toBe('09:00');
    expect(formatHour(23)).toBe('23:00');
    expect(formatHour('18:30')).toBe('18:30');
  });

  it('says seats left in words', () => {
    expect(seatsLeftText(0)).toBe('No seats left');
    expect(seatsLeftText(1)).toBe('1 seat left');
    expect(seatsLeftText(7)).toBe('7 seats left');
  });

  it('names booking states in words', () => {
    expect(bookingStatusText('active')).toBe('Active');
    expect(bookingStatusText('cancelled')).toBe('Cancelled');
    expect(bookingStatusText('event_cancelled')).toBe('Event cancelled');
  });
});
