import { ApiError } from './api';
import type { Availability, MyEvent } from './types';

/** What a person should be told about an event's seats, from the event and its availability. */
export type SaleState =
  | { kind: 'cancelled' }
  | { kind: 'soldout'; capacity: number }
  | { kind: 'open'; available: number; capacity: number; max: number }
  | { kind: 'pending' }
  | { kind: 'unknown'; error: unknown };

export const DEFAULT_MAX_SEATS = 10;

/**
 * `availability` is undefined while loading, an Availability, or the error from fetching it. A 404
 * means the bookings service has not yet learned about a just-created event: "not yet on sale".
 */
export function saleState(event: Pick<MyEvent, 'Status' | 'Capacity'> | undefined, availability: Availability | unknown): SaleState {
  if (event?.Status === 'cancelled') return { kind: 'cancelled' };
  if (availability instanceof ApiError && availability.status === 404) return { kind: 'pending' };
  if (availability instanceof Error || (availability !== undefined && !isAvailability(availability))) {
    return { kind: 'unknown', error: availability };
  }
  if (availability === undefined) return { kind: 'unknown', error: undefined };
  if (availability.Status === 'cancelled') return { kind: 'cancelled' };
  if (availability.Available <= 0) return { kind: 'soldout', capacity: availability.Capacity };
  const max = availability.MaxSeatsPerBooking && availability.MaxSeatsPerBooking > 0 ? availability.MaxSeatsPerBooking : DEFAULT_MAX_SEATS;
  return { kind: 'open', available: availability.Available, capacity: availability.Capacity, max };
}

function isAvailability(v: unknown): v is Availability {
  return typeof v === 'object' && v !== null && typeof (v as Availability).Available === 'number';
}
