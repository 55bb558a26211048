// What the organiser's new-event form sends: its fields checked and turned into the API's body,
// apart from the component so that a test can check what is sent.
import { formatDuration, minutesBetween, seatsText } from './format';
import type { Hall, Location, NewEvent } from './types';

export interface EventFormFields {
  name: string;
  location: Location | undefined;
  hall: Hall | undefined;
  /** Unix seconds, or null when the input does not hold a date. */
  start: number | null;
  end: number | null;
  /** The inputs' texts: the optional ones are empty when left out. */
  duration: string;
  capacity: string;
  seatsPerCustomer: string;
}

/** The body to post to `/events`, or what is wrong with the fields, for a person. */
export function newEventBody(f: EventFormFields): NewEvent | string {
  if (!f.name.trim()) return 'Enter the name of the event.';
  if (!f.location) return 'Choose a location.';
  if (!f.hall) return 'Choose a hall.';
  if (f.start === null) return 'Enter when the event starts.';
  if (f.end === null) return 'Enter when the event ends.';
  if (f.end <= f.start) return 'The end must be after the start.';
  const span = minutesBetween(f.start, f.end);
  const d = Number(f.duration);
  if (!Number.isInteger(d) || d <= 0) return 'The duration is a whole number of minutes, at least 1.';
  if (d > span) return `The duration (${formatDuration(d)}) is longer than the time between start and end (${formatDuration(span)}).`;
  const body: NewEvent = {
    Name: f.name.trim(),
    Duration: d,
    StartDate: f.start,
    EndDate: f.end,
    Location: { ID: f.location.ID },
    Hall: f.hall.name,
  };
  let capacity = f.hall.capacity;
  if (f.capacity.trim() !== '') {
    const c = Number(f.capacity);
    if (!Number.isInteger(c) || c <= 0) return 'Capacity is a whole number of seats, at least 1.';
    if (c > f.hall.capacity) return `Hall “${f.hall.name}” has only ${seatsText(f.hall.capacity)}; choose a capacity up to that.`;
    body.Capacity = c;
    capacity = c;
  }
  if (f.seatsPerCustomer.trim() !== '') {
    const s = Number(f.seatsPerCustomer);
    if (!Number.isInteger(s) || s <= 0) return 'Seats per customer is a whole number of seats, at least 1.';
    if (s > capacity) return `Seats per customer can be at most the event's capacity (${seatsText(capacity)}).`;
    body.SeatsPerCustomer = s;
  }
  return body;
}
