import { useState } from 'react';
import { ApiError, api } from '../api';
import { useAuth } from '../auth';
import { Badge, ConfirmDialog, Empty, ErrorBox, Notice, Spinner, type BadgeKind } from '../components/ui';
import { bookingStatusText, formatDateTime, seatsText } from '../format';
import { usePolled, useTitle } from '../hooks';
import { href } from '../router';

const STATUS_BADGE: Record<string, BadgeKind> = {
  active: 'active',
  cancelled: 'muted',
  event_cancelled: 'cancelled',
};

/**
 * One booking's page: the page a guest booking's link opens (its token after `?token=`), and
 * where a signed-in customer or an organiser can see one booking too.
 */
export function BookingPage({ id, token }: { id: string; token?: string }) {
  const { user } = useAuth();
  useTitle('Your booking');
  const booking = usePolled((signal) => api.getBooking(id, token, signal), `booking:${id}:${token ?? ''}:${user?.ID ?? ''}`);
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [done, setDone] = useState(false);

  if (booking.loading && !booking.data) return <Spinner label="Loading your booking…" />;
  if (!booking.data) {
    const e = booking.error;
    if (e instanceof ApiError && (e.status === 403 || e.status === 401 || e.status === 404)) {
      return (
        <Empty title="This link does not open a booking">
          <p>
            Open the link from your booking's confirmation (the whole link, with its token), or{' '}
            <a href={href({ name: 'signin', next: href({ name: 'booking', id }) })}>sign in</a> if you booked with an
            account.
          </p>
        </Empty>
      );
    }
    return <ErrorBox error={e} title="Could not load this booking." onRetry={booking.reload} />;
  }

  const b = booking.data;
  const cancel = async () => {
    setBusy(true);
    setCancelError(null);
    try {
      await api.cancelBooking(b.ID, token);
      setAsking(false);
      setDone(true);
      booking.reload();
    } catch (err) {
      setCancelError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card booking-page" aria-labelledby="booking-title" data-testid="booking-page">
      <h1 id="booking-title">Your booking</h1>
      {done && <Notice kind="success">Your booking is cancelled. Its seats are free again.</Notice>}
      <dl className="facts">
        <div>
          <dt>Event</dt>
          <dd>
            <a href={href({ name: 'event', id: b.EventID })}>{b.EventName || 'The event'}</a>
          </dd>
        </div>
        <div>
          <dt>Seats</dt>
          <dd>{seatsText(b.Seats)}</dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd data-testid="booking-status">
            <Badge kind={STATUS_BADGE[b.Status] ?? 'muted'}>{bookingStatusText(b.Status)}</Badge>
          </dd>
        </div>
        <div>
          <dt>Booking number</dt>
          <dd>
            <code>{b.ID}</code>
          </dd>
        </div>
        {b.Email && (
          <div>
            <dt>E-mail</dt>
            <dd>{b.Email}</dd>
          </div>
        )}
        {b.Date ? (
          <div>
            <dt>Booked</dt>
            <dd>{formatDateTime(b.Date)}</dd>
          </div>
        ) : null}
      </dl>
      {b.Status === 'active' && (
        <div className="actions">
          <button type="button" className="btn btn-danger" onClick={() => setAsking(true)}>
            Cancel booking
          </button>
        </div>
      )}
      <ConfirmDialog
        open={asking}
        title="Cancel this booking?"
        confirmLabel="Yes, cancel booking"
        cancelLabel="Keep booking"
        busy={busy}
        error={cancelError}
        onConfirm={cancel}
        onCancel={() => setAsking(false)}
      >
        <p>
          {seatsText(b.Seats)} for <strong>{b.EventName || 'this event'}</strong> will be released to other customers.
          This cannot be undone.
        </p>
      </ConfirmDialog>
    </section>
  );
}
