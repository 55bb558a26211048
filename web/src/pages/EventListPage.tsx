import { api } from '../api';
import { saleState, type SaleState } from '../availability';
import { useAuth } from '../auth';
import { Badge, Empty, ErrorBox, Spinner } from '../components/ui';
import { formatDateTime, formatDuration } from '../format';
import { usePolled, useTitle } from '../hooks';
import { href } from '../router';
import type { Availability, MyEvent } from '../types';

interface Listed {
  event: MyEvent;
  availability: Availability | unknown;
}

// The list refreshes every 5 s (short polling; see hooks.ts for why not SSE).
const LIST_REFRESH_MS = 5000;

async function loadList(signal: AbortSignal): Promise<Listed[]> {
  const events = await api.listEvents(signal);
  const now = Date.now() / 1000;
  // Upcoming first, soonest first; past events after them.
  events.sort((a, b) => {
    const pa = a.EndDate < now ? 1 : 0;
    const pb = b.EndDate < now ? 1 : 0;
    return pa - pb || a.StartDate - b.StartDate || a.Name.localeCompare(b.Name);
  });
  const avail = await Promise.allSettled(
    events.map((e) => (e.Status === 'cancelled' ? Promise.resolve(undefined) : api.availability(e.ID, signal))),
  );
  return events.map((event, i) => {
    const r = avail[i];
    return { event, availability: r.status === 'fulfilled' ? r.value : r.reason };
  });
}

export function EventListPage() {
  useTitle('Events');
  const { user } = useAuth();
  const { data, error, loading, reload } = usePolled(loadList, 'events', LIST_REFRESH_MS);

  return (
    <section aria-labelledby="events-title">
      <div className="page-head">
        <div>
          <h1 id="events-title">Upcoming events</h1>
          <p className="lead">Concerts, theatre and sport. Seat counts update live.</p>
        </div>
        {user?.Role === 'admin' && (
          <a className="btn btn-primary" href={href({ name: 'adminNewEvent' })}>
            New event
          </a>
        )}
      </div>
      {error !== undefined && <ErrorBox error={error} title="Could not load events." onRetry={reload} />}
      {loading && !data && <Spinner label="Loading events…" />}
      {data && data.length === 0 && (
        <Empty title="No events yet">
          <p>Nothing is on sale right now. Check back soon.</p>
        </Empty>
      )}
      {data && data.length > 0 && (
        <ul className="event-grid" aria-label="Events">
          {data.map(({ event, availability }) => (
            <EventCard key={event.ID} event={event} state={saleState(event, availability)} />
          ))}
        </ul>
      )}
    </section>
  );
}

function EventCard({ event, state }: { event: MyEvent; state: SaleState }) {
  const past = event.EndDate < Date.now() / 1000;
  const hall = event.Hall ? ` · ${event.Hall}` : '';
  const bookable = state.kind === 'open' && !past;
  const starts = new Date(event.StartDate * 1000);
  return (
    <li className={`card event-card${state.kind === 'cancelled' ? ' is-cancelled' : ''}`} data-testid="event-card">
      <div className="event-head">
        <div className="event-date" aria-hidden="true">
          <span className="event-date-month">{starts.toLocaleString(undefined, { month: 'short' })}</span>
          <span className="event-date-day">{starts.getDate()}</span>
        </div>
        <div className="event-head-text">
          <h2 className="event-name">
            <a href={href({ name: 'event', id: event.ID })}>{event.Name}</a>
          </h2>
          <p className="event-where">
            <span className="sr-only">Where: </span>
            {event.Location?.Name ?? 'Unknown venue'}
            {hall}
          </p>
        </div>
        <div className="event-badge">
          <StateBadge state={state} past={past} />
        </div>
      </div>
      <p className="event-when">
        <span className="sr-only">When: </span>
        <time dateTime={starts.toISOString()}>{formatDateTime(event.StartDate)}</time>
        {event.Duration > 0 && <span className="muted"> · {formatDuration(event.Duration)}</span>}
      </p>
      <div className="event-foot">
        <SeatsLine state={state} />
        {bookable ? (
          <a className="btn btn-primary" href={href({ name: 'event', id: event.ID })} aria-label={`Book ${event.Name}`}>
            Book
          </a>
        ) : (
          <a className="btn btn-ghost" href={href({ name: 'event', id: event.ID })} aria-label={`Details of ${event.Name}`}>
            Details
          </a>
        )}
      </div>
    </li>
  );
}

export function StateBadge({ state, past }: { state: SaleState; past?: boolean }) {
  if (state.kind === 'cancelled') return <Badge kind="cancelled">Cancelled</Badge>;
  if (past) return <Badge kind="muted">Past</Badge>;
  if (state.kind === 'soldout') return <Badge kind="soldout">Sold out</Badge>;
  if (state.kind === 'pending') return <Badge kind="pending">Not yet on sale</Badge>;
  if (state.kind === 'open' && state.available <= Math.max(3, Math.ceil(state.capacity * 0.1))) {
    return <Badge kind="few">Few left</Badge>;
  }
  return null;
}

function SeatsLine({ state }: { state: SaleState }) {
  switch (state.kind) {
    case 'open':
      return (
        <span className="seats" data-testid="seats-left">
          <strong>{state.available}</strong> of {state.capacity} seats left
        </span>
      );
    case 'soldout':
      return (
        <span className="seats seats-none" data-testid="seats-left">
          No seats left
        </span>
      );
    case 'cancelled':
      return <span className="seats seats-none">No longer on sale</span>;
    case 'pending':
      return <span className="seats">Tickets on sale in a moment</span>;
    case 'unknown':
      return <span className="seats">{state.error ? 'Seat count unavailable' : 'Checking seats…'}</span>;
  }
}
