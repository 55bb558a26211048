import { useState } from 'react';
import { ApiError, api } from '../api';
import { Badge, ConfirmDialog, Empty, ErrorBox, Notice, Spinner } from '../components/ui';
import { formatDateTime } from '../format';
import { usePolled, useTitle } from '../hooks';
import { href } from '../router';
import type { MyEvent, Sales } from '../types';
import { AdminShell } from './AdminShell';

const REFRESH_MS = 5000;

interface Row {
  event: MyEvent;
  sales?: Sales;
}

async function loadRows(signal: AbortSignal): Promise<{ rows: Row[]; salesError?: unknown }> {
  const events = await api.listEvents(signal);
  events.sort((a, b) => a.StartDate - b.StartDate || a.Name.localeCompare(b.Name));
  let sales: Sales[] = [];
  let salesError: unknown;
  try {
    sales = await api.sales(signal);
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    // Without the all-events report, ask per event.
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
      const each = await Promise.allSettled(events.map((e) => api.eventSales(e.ID, signal)));
      sales = each.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    } else {
      salesError = err;
    }
  }
  const byId = new Map(sales.map((s) => [s.EventID, s]));
  // The report leaves out events nobody has booked yet: those have sold nothing.
  const none = (id: string): Sales | undefined =>
    salesError === undefined ? { EventID: id, SeatsSold: 0, Bookings: 0, Cancellations: 0 } : undefined;
  return { rows: events.map((event) => ({ event, sales: byId.get(event.ID) ?? none(event.ID) })), salesError };
}

export function AdminEventsPage() {
  useTitle('Organiser');
  return (
    <AdminShell current="admin" title="Events & sales">
      <EventsTable />
    </AdminShell>
  );
}

function EventsTable() {
  const { data, error, loading, reload } = usePolled(loadRows, 'admin-events', REFRESH_MS);
  const [toCancel, setToCancel] = useState<MyEvent | null>(null);
  const [busy, setBusy] = useState(false);
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);

  const confirm = async () => {
    if (!toCancel) return;
    setBusy(true);
    setCancelError(null);
    try {
      await api.cancelEvent(toCancel.ID);
      setDone(`“${toCancel.Name}” is cancelled. Its bookings are being cancelled and customers notified.`);
      setToCancel(null);
      reload();
    } catch (err) {
      setCancelError(err);
    } finally {
      setBusy(false);
    }
  };

  const rows = data?.rows ?? [];
  const totals = rows.reduce(
    (t, r) => ({
      seats: t.seats + (r.sales?.SeatsSold ?? 0),
      bookings: t.bookings + (r.sales?.Bookings ?? 0),
      cancellations: t.cancellations + (r.sales?.Cancellations ?? 0),
    }),
    { seats: 0, bookings: 0, cancellations: 0 },
  );
  const toCancelSales = toCancel ? rows.find((r) => r.event.ID === toCancel.ID)?.sales : undefined;

  return (
    <>
      {done && <Notice kind="success">{done}</Notice>}
      {error !== undefined && <ErrorBox error={error} title="Could not load events." onRetry={reload} />}
      {data?.salesError !== undefined && <ErrorBox error={data.salesError} title="Could not load sales." />}
      {loading && !data && <Spinner label="Loading events and sales…" />}
      {data && rows.length === 0 && (
        <Empty title="No events yet">
          <p>
            Start with a <a href={href({ name: 'adminLocations' })}>location</a>, then{' '}
            <a href={href({ name: 'adminNewEvent' })}>create an event</a>.
          </p>
        </Empty>
      )}
      {rows.length > 0 && (
        <>
          <div className="stats">
            <div className="stat">
              <span className="stat-value">{rows.length}</span>
              <span className="stat-label">events</span>
            </div>
            <div className="stat">
              <span className="stat-value">{totals.seats}</span>
              <span className="stat-label">seats sold</span>
            </div>
            <div className="stat">
              <span className="stat-value">{totals.bookings}</span>
              <span className="stat-label">bookings</span>
            </div>
            <div className="stat">
              <span className="stat-value">{totals.cancellations}</span>
              <span className="stat-label">cancellations</span>
            </div>
          </div>
          <div className="table-wrap">
            <table className="table">
              <caption className="sr-only">Events with their sales</caption>
              <thead>
                <tr>
                  <th scope="col">Event</th>
                  <th scope="col" className="num">
                    Seats sold
                  </th>
                  <th scope="col" className="num">
                    Bookings
                  </th>
                  <th scope="col" className="num">
                    Cancellations
                  </th>
                  <th scope="col">Status</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map(({ event, sales }) => (
                  <tr key={event.ID} data-testid="admin-event-row">
                    <th scope="row">
                      <a href={href({ name: 'event', id: event.ID })}>{event.Name}</a>
                      <span className="cell-sub">
                        {formatDateTime(event.StartDate)} · {event.Location?.Name}
                        {event.Hall && <> · {event.Hall}</>}
                      </span>
                    </th>
                    <td className="num" data-label="Seats sold" data-testid="seats-sold">
                      {sales ? `${sales.SeatsSold} / ${event.Capacity}` : '—'}
                    </td>
                    <td className="num" data-label="Bookings">
                      {sales?.Bookings ?? '—'}
                    </td>
                    <td className="num" data-label="Cancellations">
                      {sales?.Cancellations ?? '—'}
                    </td>
                    <td data-label="Status">
                      {event.Status === 'cancelled' ? <Badge kind="cancelled">Cancelled</Badge> : <Badge kind="active">On sale</Badge>}
                    </td>
                    <td className="actions-cell">
                      {event.Status !== 'cancelled' && (
                        <button
                          type="button"
                          className="btn btn-small btn-danger-ghost"
                          onClick={() => {
                            setDone(null);
                            setCancelError(null);
                            setToCancel(event);
                          }}
                          aria-label={`Cancel event ${event.Name}`}
                        >
                          Cancel event
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <ConfirmDialog
        open={toCancel !== null}
        title={toCancel ? `Cancel “${toCancel.Name}”?` : 'Cancel event?'}
        confirmLabel="Yes, cancel event"
        cancelLabel="Keep event"
        busy={busy}
        error={cancelError}
        onConfirm={confirm}
        onCancel={() => setToCancel(null)}
      >
        <p>The event stops taking bookings, and every active booking for it is cancelled.</p>
        {toCancelSales && toCancelSales.SeatsSold > 0 && (
          <p>
            <strong>{toCancelSales.SeatsSold}</strong> sold seats will be cancelled and their customers told.
          </p>
        )}
        <p>This cannot be undone.</p>
      </ConfirmDialog>
    </>
  );
}
