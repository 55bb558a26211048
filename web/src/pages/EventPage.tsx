import { useEffect, useRef, useState, type FormEvent } from 'react';
import { ApiError, api, bookingFailedForGood, errorMessage, newIdempotencyKey } from '../api';
import { saleState, type SaleState } from '../availability';
import { useAuth } from '../auth';
import { Empty, ErrorBox, Field, Spinner } from '../components/ui';
import { formatDateTime, formatDuration, formatHour, formatRange, seatsText } from '../format';
import { usePolled, useTitle } from '../hooks';
import { href } from '../router';
import type { Booking, MyEvent } from '../types';
import { StateBadge } from './EventListPage';

// Seats left are polled every 2 s while the page is open (short polling; see hooks.ts for why).
const AVAILABILITY_POLL_MS = 2000;

export function EventPage({ id }: { id: string }) {
  const ev = usePolled((signal) => api.getEvent(id, signal), `event:${id}`);
  const avail = usePolled((signal) => api.availability(id, signal), `avail:${id}`, AVAILABILITY_POLL_MS);
  useTitle(ev.data?.Name ?? 'Event');

  if (ev.loading && !ev.data) return <Spinner label="Loading event…" />;
  if (!ev.data) {
    if (ev.error instanceof ApiError && ev.error.status === 404) {
      return (
        <Empty title="Event not found">
          <p>
            It may have been removed, or the link is wrong. <a href={href({ name: 'events' })}>See all events</a>.
          </p>
        </Empty>
      );
    }
    return <ErrorBox error={ev.error} title="Could not load this event." onRetry={ev.reload} />;
  }

  const event = ev.data;
  // The availability answer carries the live status too: an event cancelled while this page is
  // open shows as cancelled at the next poll.
  const state = saleState(event, avail.data ?? avail.error);
  const past = event.EndDate < Date.now() / 1000;

  return (
    <article className="event-page" aria-labelledby="event-title">
      <p className="breadcrumb">
        <a href={href({ name: 'events' })}>← All events</a>
      </p>
      <div className="event-layout">
        <div className="event-details card">
          <div className="event-title-row">
            <h1 id="event-title">{event.Name}</h1>
            <StateBadge state={state} past={past} />
          </div>
          <dl className="facts">
            <div>
              <dt>When</dt>
              <dd>
                {formatRange(event.StartDate, event.EndDate)}
                {event.Duration > 0 && <span className="muted"> ({formatDuration(event.Duration)})</span>}
              </dd>
            </div>
            <div>
              <dt>Where</dt>
              <dd>
                {event.Location?.Name}
                {event.Location?.Address && <span className="muted">, {event.Location.Address}</span>}
                {event.Location?.Country && <span className="muted">, {event.Location.Country}</span>}
              </dd>
            </div>
            <div>
              <dt>Hall</dt>
              <dd>
                {event.Hall || '—'}
                {hallPlace(event) && <span className="muted"> ({hallPlace(event)})</span>}
              </dd>
            </div>
            {event.Location && (event.Location.OpenTime || event.Location.CloseTime) ? (
              <div>
                <dt>Venue hours</dt>
                <dd>
                  {formatHour(event.Location.OpenTime)}–{formatHour(event.Location.CloseTime)}
                </dd>
              </div>
            ) : null}
            <div>
              <dt>Capacity</dt>
              <dd>{seatsText(event.Capacity)}</dd>
            </div>
            {event.SeatsPerCustomer !== undefined && (
              <div>
                <dt>Per customer</dt>
                <dd data-testid="seats-per-customer">At most {seatsText(event.SeatsPerCustomer)}</dd>
              </div>
            )}
          </dl>
          <LiveSeats state={state} stale={avail.error !== undefined && avail.data !== undefined} />
        </div>
        <aside className="booking-panel card" aria-labelledby="booking-title">
          <h2 id="booking-title">Tickets</h2>
          <BookingArea event={event} state={state} past={past} onChanged={avail.reload} />
        </aside>
      </div>
    </article>
  );
}

function hallPlace(event: MyEvent): string {
  return event.Location?.Halls?.find((h) => h.name === event.Hall)?.location ?? '';
}

function LiveSeats({ state, stale }: { state: SaleState; stale: boolean }) {
  let text: string;
  switch (state.kind) {
    case 'open':
      text = `${state.available} of ${state.capacity} seats left`;
      break;
    case 'soldout':
      text = 'Sold out';
      break;
    case 'cancelled':
      text = 'This event has been cancelled';
      break;
    case 'pending':
      text = 'Not yet on sale';
      break;
    case 'unknown':
      text = state.error ? 'Seat count unavailable right now' : 'Checking seats…';
      break;
  }
  const pct = state.kind === 'open' && state.capacity > 0 ? Math.round((100 * state.available) / state.capacity) : state.kind === 'soldout' ? 0 : null;
  return (
    <div className={`live-seats${state.kind === 'open' ? '' : ' is-closed'}`} data-testid="live-seats">
      <div className="live-seats-row">
        <span className="live-dot" aria-hidden="true" />
        <span aria-live="polite" aria-atomic="true" data-testid="availability">
          {text}
        </span>
      </div>
      {pct !== null && (
        <div className="meter" aria-hidden="true">
          <div className="meter-fill" style={{ width: `${pct}%` }} />
        </div>
      )}
      {stale && <p className="hint">Could not refresh the seat count; showing the last one known.</p>}
    </div>
  );
}

function BookingArea({
  event,
  state,
  past,
  onChanged,
}: {
  event: MyEvent;
  state: SaleState;
  past: boolean;
  onChanged: () => void;
}) {
  const [confirmed, setConfirmed] = useState<Booking | null>(null);

  if (confirmed) {
    return <Confirmation booking={confirmed} event={event} onAgain={() => setConfirmed(null)} />;
  }
  if (state.kind === 'cancelled') {
    return (
      <div className="panel-state panel-cancelled">
        <strong>Cancelled</strong>
        <p>The organiser cancelled this event. Every booking for it has been cancelled.</p>
      </div>
    );
  }
  if (past) {
    return (
      <div className="panel-state">
        <strong>This event has ended</strong>
      </div>
    );
  }
  if (state.kind === 'soldout') {
    return (
      <div className="panel-state panel-soldout" data-testid="sold-out">
        <strong>Sold out</strong>
        <p>All {seatsText(state.capacity)} are taken. Seats freed by cancellations appear here right away.</p>
      </div>
    );
  }
  if (state.kind === 'pending') {
    return (
      <div className="panel-state">
        <strong>Not yet on sale</strong>
        <p>Tickets for this event go on sale in a moment. This page updates by itself.</p>
      </div>
    );
  }
  if (state.kind === 'unknown') {
    return state.error ? <ErrorBox error={state.error} title="Could not check seats." /> : <Spinner label="Checking seats…" />;
  }
  return (
    <BookingForm
      event={event}
      available={state.available}
      max={state.max}
      onBooked={(b) => {
        setConfirmed(b);
        onChanged();
      }}
      onConflict={onChanged}
    />
  );
}

function BookingForm({
  event,
  available,
  max,
  onBooked,
  onConflict,
}: {
  event: MyEvent;
  available: number;
  max: number;
  onBooked: (b: Booking) => void;
  onConflict: () => void;
}) {
  const { user } = useAuth();
  const limit = Math.max(1, Math.min(max, available));
  const [seats, setSeats] = useState(1);
  const [email, setEmail] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // One key per booking attempt: a double click or a retry after a lost answer books once. A new
  // key is made once the server has given a definite answer, or when the request itself changes.
  const keyRef = useRef<string>(newIdempotencyKey());

  useEffect(() => {
    if (seats > limit) setSeats(limit);
  }, [limit, seats]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (busy) return;
    setError(null);
    const guestEmail = user ? undefined : email.trim();
    if (!user && !guestEmail) {
      setError('Enter your e-mail address, or sign in.');
      return;
    }
    setBusy(true);
    try {
      const booking = await api.book(event.ID, seats, guestEmail, keyRef.current);
      keyRef.current = newIdempotencyKey();
      onBooked(booking);
    } catch (err) {
      if (bookingFailedForGood(err)) keyRef.current = newIdempotencyKey();
      if (err instanceof ApiError && err.status === 409) {
        // The API's words already say how many seats are left ("not enough seats left: only 2
        // are available"); refresh the count so that the form offers only what is there.
        setError(err.message);
        onConflict();
      } else {
        setError(errorMessage(err));
      }
    } finally {
      setBusy(false);
    }
  };

  const options = Array.from({ length: limit }, (_, i) => i + 1);
  const returnTo = href({ name: 'event', id: event.ID });
  return (
    <form className="form" onSubmit={submit} noValidate aria-describedby={error ? 'booking-error' : undefined}>
      <Field label="Seats" htmlFor="seats" hint={`Up to ${seatsText(limit)} per booking.`}>
        <select
          id="seats"
          name="seats"
          value={seats}
          onChange={(e) => {
            setSeats(Number(e.target.value));
            keyRef.current = newIdempotencyKey();
          }}
          disabled={busy}
        >
          {options.map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </Field>
      {user ? (
        <p className="booking-as">
          Booking as <strong>{user.Name || user.Email}</strong>
          {user.Name && <span className="muted"> ({user.Email})</span>}
        </p>
      ) : (
        <>
          <Field
            label="Your e-mail"
            htmlFor="guest-email"
            hint={
              <>
                We send your tickets there. Or <a href={href({ name: 'signin', next: returnTo })}>sign in</a> to keep
                your bookings in one place.
              </>
            }
          >
            <input
              id="guest-email"
              name="email"
              type="email"
              autoComplete="email"
              required
              value={email}
              onChange={(e) => {
                setEmail(e.target.value);
                keyRef.current = newIdempotencyKey();
              }}
              disabled={busy}
            />
          </Field>
        </>
      )}
      {error && (
        <div className="alert alert-error" role="alert" id="booking-error">
          <div>{error}</div>
        </div>
      )}
      <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
        {busy ? 'Booking…' : `Book ${seatsText(seats)}`}
      </button>
    </form>
  );
}

function Confirmation({ booking, event, onAgain }: { booking: Booking; event: MyEvent; onAgain: () => void }) {
  const { user } = useAuth();
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <div className="confirmation" ref={ref} tabIndex={-1} role="status" data-testid="confirmation">
      <div className="confirmation-icon" aria-hidden="true">
        ✓
      </div>
      <h3>Booking confirmed</h3>
      <p>
        {seatsText(booking.Seats)} for <strong>{booking.EventName || event.Name}</strong>.
      </p>
      <dl className="facts compact">
        <div>
          <dt>Booking number</dt>
          <dd>
            <code data-testid="booking-id">{booking.ID}</code>
          </dd>
        </div>
        {booking.Email && (
          <div>
            <dt>Confirmation sent to</dt>
            <dd>{booking.Email}</dd>
          </div>
        )}
        {booking.Date ? (
          <div>
            <dt>Booked</dt>
            <dd>{formatDateTime(booking.Date)}</dd>
          </div>
        ) : null}
      </dl>
      <div className="actions">
        {user && (
          <a className="btn btn-primary" href={href({ name: 'bookings' })}>
            My bookings
          </a>
        )}
        <button type="button" className="btn btn-ghost" onClick={onAgain}>
          Book more seats
        </button>
      </div>
      {!user && booking.Token && (
        <p className="hint" data-testid="guest-link">
          This booking's own page, where you can see or cancel it:{' '}
          <a href={href({ name: 'booking', id: booking.ID, token: booking.Token })}>open your booking</a>. Keep its link
          {booking.Email ? ' (it is in your confirmation e-mail too)' : ''}: without an account, it is the only way in,
          and whoever has it can cancel the booking.
        </p>
      )}
    </div>
  );
}
