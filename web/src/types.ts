// Shapes of the MyEvents HTTP API (PascalCase keys, as in the reference MyEvents; a hall's keys are
// lower-case).

export interface Hall {
  name: string;
  location: string;
  capacity: number;
}

export interface Location {
  ID: string;
  Name: string;
  Address: string;
  Country: string;
  OpenTime: number;
  CloseTime: number;
  Halls: Hall[];
}

export type EventStatus = 'active' | 'cancelled';

export interface MyEvent {
  ID: string;
  Name: string;
  /** Minutes. */
  Duration: number;
  /** Unix seconds. */
  StartDate: number;
  /** Unix seconds. */
  EndDate: number;
  Location: Location;
  Hall: string;
  Capacity: number;
  Status: EventStatus;
}

export interface Availability {
  EventID: string;
  Capacity: number;
  Available: number;
  Status: EventStatus;
  MaxSeatsPerBooking?: number;
}

export type BookingStatus = 'active' | 'cancelled' | 'event_cancelled';

export interface Booking {
  ID: string;
  EventID: string;
  EventName?: string;
  Seats: number;
  /** Unix seconds. */
  Date: number;
  Status: BookingStatus;
  UserID?: string | null;
  Email?: string | null;
}

export type Role = 'customer' | 'admin';

export interface User {
  ID: string;
  Email: string;
  Name: string;
  Role: Role;
}

export interface LoginResult {
  Token: string;
  ExpiresAt: number;
}

export interface Sales {
  EventID: string;
  SeatsSold: number;
  Bookings: number;
  Cancellations: number;
}

export interface NewLocation {
  Name: string;
  Address: string;
  Country: string;
  OpenTime: number;
  CloseTime: number;
  Halls: Hall[];
}

export interface NewEvent {
  Name: string;
  Duration: number;
  StartDate: number;
  EndDate: number;
  Location: { ID: string };
  Hall: string;
  Capacity?: number;
}
