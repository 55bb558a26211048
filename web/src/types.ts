// The shapes of the MyEvents HTTP API under the names the UI uses. They come from
// api-schema.ts, which is generated from the server's OpenAPI document (scripts/api-types.sh),
// so a change on the server that the UI does not follow fails `tsc`.
import type { components } from './api-schema';

type Schemas = components['schemas'];

export type Hall = Schemas['Hall'];
export type Location = Schemas['Location'];
export type EventStatus = Schemas['EventStatus'];
export type MyEvent = Schemas['Event'];
export type Availability = Schemas['EventAvailability'];
export type BookingStatus = Schemas['BookingStatus'];
// A booking as the API answers it: a guest booking's adds its Token and Link.
export type Booking = Schemas['BookingAnswer'];
export type Role = Schemas['Role'];
export type User = Schemas['User'];
export type LoginResult = Schemas['SignedIn'];
export type Sales = Schemas['Sales'];
export type NewLocation = Schemas['NewLocation'];
export type NewEvent = Schemas['NewEvent'];
export type NewBooking = Schemas['NewBooking'];
export type NewUser = Schemas['NewUser'];
export type Credentials = Schemas['Credentials'];
