import { useState } from 'react';
import { api } from '../api';
import { useAuth } from '../auth';
import { Badge, ConfirmDialog, Empty, ErrorBox, Notice, Spinner, type BadgeKind } from '../components/ui';
import { bookingStatusText, formatDateTime, seatsText } from '../format';
import { usePolled, useTitle } from '../hooks';
import { href } from '../router';
import type { Booking, MyEvent } from '../types';

// Refreshed every 5 s so that an event cancelled by the organiser shows up without a reload.
const REFRESH_MS = 5000;

const STATUS_BADGE: Record<string, BadgeKind> = {
  active: 'active',
  cancelled: 'muted',
  event_cancelled: 'cancelled',
};

export function BookingsPage() {
  const { user, checking } = useAuth();
  useTitle(user?.Role === 'admin' ? 'Bookings' : 'My bookings');
  if (checking) return <Spinner />;
  if (!user) {
    return (
      <Empty title="Sign in to see your bookings">
        <p>
          <a className="btn btn-primary" href={href({ name: 'signin', next: href({ name: 'bookings' }) })}>
            Sign in
          </a>{' '}
          <a className="btn btn-ghost" href={href({ name: 'signup', next: href({ name: 'bookings' }) })}>
            Create an account
          </a>
        </p>
        <p className="hint">Booked as a guest? Your booking number is in the confirmation e-mail.</p>
      </Empty>
    );
  }
  return <BookingsList admin={user.Role === 'admin'} userKey={user.ID} />;
}

function BookingsList({ admin, userKey }: { admin: boolean; userKey: string }) {
  const [filter, setFilter] = useState('');
  const bookings = usePolled(
    (signal) => api.listBookings(filter || undefined, signal),
    `bookings:${userKey}:${filter}`,
    REFRESH_MS,
  );
  const events = usePolled((signal) => (admin ? api.listEvents(signal) : Promise.resolve([] as MyEvent[])), `events:${admin}`);
  const [toCancel, setToCancel] = useState<Booking | null>(null);
  const [busy, setBusy] = useState(false);
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);

  const eventsById = new Map((events.data ?? []).map((e) => [e.ID, e]));
  const list = [...(bookings.data ?? [])].sort((a, b) => b.Date - a.Date);

  const confirmCancel = async () => {
    if (!toCancel) return;
    setBusy(true);
    setCancelError(null);
    try {
      await api.cancelBooking(toCancel.ID);
      setDone(`Booking ${toCancel.ID} is cancelled. Its seats are free again.`);
      setToCancel(null);
      bookings.reload();
    } catch (err) {
      setCancelError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="bookings-title">
      <div className="page-head">
        <div>
          <h1 id="bookings-title">{admin ? 'All bookings' : 'My bookings'}</h1>
          <p className="lead">{admin ? 'Every booking, newest first.' : 'Your tickets, newest first.'}</p>
        </div>
        {admin && (
          <div className="field inline-field">
            <label htmlFor="booking-filter">Event</label>
            <select id="booking-filter" value={filter} onChange={(e) => setFilter(e.target.value)}>
              <option value="">All events</option>
              {(events.data ?? []).map((e) => (
                <option key={e.ID} value={e.ID}>
                  {e.Name}
                </option>
              ))}
            </select>
          </div>
        )}
      </div>
      {done && <Notice kind="success">{done}</Notice>}
      {bookings.error !== undefined && (
        <ErrorBox error={bookings.error} title="Could not load bookings." onRetry={bookings.reload} />
      )}
      {bookings.loading && !bookings.data && <Spinner label="Loading bookings…" />}
      {bookings.data && list.length === 0 && (
        <Empty title="No bookings yet">
          <p>
            <a className="btn btn-primary" href={href({ name: 'events' })}>
              Find an event
            </a>
          </p>
        </Empty>
      )}
      {list.length > 0 && (
        <ul className="booking-list" aria-label="Bookings">
          {list.map((b) => {
            const ev = eventsById.get(b.EventID);
            const name = b.EventName || ev?.Name || 'Event';
            return (
              <li key={b.ID} className={`card booking-card status-${b.Status}`} data-testid="booking">
                <div className="booking-main">
                  <h2 className="booking-event">
                    <a href={href({ name: 'event', id: b.EventID })}>{name}</a>
                  </h2>
                  <p className="booking-meta">
                    <span>{seatsText(b.Seats)}</span>
                    {ev && <span>{formatDateTime(ev.StartDate)}</span>}
                    <span>Booked {formatDateTime(b.Date)}</span>
                    {admin && (b.Email || b.UserID) && <span>{b.Email || b.UserID}</span>}
                  </p>
                  <p className="booking-id">
                    Booking number <code>{b.ID}</code>
                  </p>
                </div>
                <div className="booking-side">
                  <Badge kind={STATUS_BADGE[b.Status] ?? 'muted'}>
                    <span className="sr-only">Status: </span>
                    <span data-testid="booking-status">{bookingStatusText(b.Status)}</span>
                  </Badge>
                  {b.Status === 'active' && (
                    <button
                      type="button"
                      className="btn btn-small btn-danger-ghost"
                      onClick={() => {
                        setCancelError(null);
                        setDone(null);
                        setToCancel(b);
                      }}
                      aria-label={`Cancel booking for ${name}`}
                    >
                      Cancel
                    </button>
                  )}
                </div>
              </li>
            );
          })}
        </ul>
      )}
      <ConfirmDialog
        open={toCancel !== null}
        title="Cancel this booking?"
        confirmLabel="Yes, cancel booking"
        cancelLabel="Keep booking"
        busy={busy}
        error={cancelError}
        onConfirm={confirmCancel}
        onCancel={() => setToCancel(null)}
      >
        {toCancel && (
          <p>
            {seatsText(toCancel.Seats)} for <strong>{toCancel.EventName || eventsById.get(toCancel.EventID)?.Name || 'this event'}</strong>{' '}
            will be released to other customers. This cannot be undone.
          </p>
        )}
      </ConfirmDialog>
    </section>
  );
}
