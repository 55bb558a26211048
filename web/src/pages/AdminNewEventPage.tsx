import { useMemo, useState, type FormEvent } from 'react';
import { api, errorMessage } from '../api';
import { Empty, ErrorBox, Field, Notice, Spinner } from '../components/ui';
import { newEventBody } from '../eventForm';
import { formatDuration, fromDateTimeLocal, minutesBetween, seatsText, toDateTimeLocal } from '../format';
import { usePolled, useTitle } from '../hooks';
import { href } from '../router';
import type { Location, MyEvent } from '../types';
import { AdminShell } from './AdminShell';

export function AdminNewEventPage() {
  useTitle('New event');
  return (
    <AdminShell current="adminNewEvent" title="New event">
      <NewEventLoader />
    </AdminShell>
  );
}

function NewEventLoader() {
  const { data, error, loading, reload } = usePolled((s) => api.listLocations(s), 'locations');
  const [created, setCreated] = useState<MyEvent | null>(null);
  if (loading && !data) return <Spinner label="Loading locations…" />;
  if (!data) return <ErrorBox error={error} title="Could not load locations." onRetry={reload} />;
  if (data.length === 0) {
    return (
      <Empty title="No locations yet">
        <p>
          An event takes place in a hall of a location. <a href={href({ name: 'adminLocations' })}>Create a location first</a>.
        </p>
      </Empty>
    );
  }
  return (
    <div className="card narrow">
      {created && (
        <Notice kind="success">
          Event “{created.Name}” created.{' '}
          <a href={href({ name: 'event', id: created.ID })} data-testid="created-event-link">
            View its page
          </a>{' '}
          or <a href={href({ name: 'admin' })}>see all events</a>.
        </Notice>
      )}
      <EventForm locations={data} onCreated={setCreated} />
    </div>
  );
}

function defaultStart(): number {
  const d = new Date();
  d.setDate(d.getDate() + 7);
  d.setHours(19, 30, 0, 0);
  return Math.floor(d.getTime() / 1000);
}

function EventForm({ locations, onCreated }: { locations: Location[]; onCreated: (e: MyEvent) => void }) {
  const [name, setName] = useState('');
  const [locationId, setLocationId] = useState(locations[0]?.ID ?? '');
  const location = locations.find((l) => l.ID === locationId);
  const [hallName, setHallName] = useState(location?.Halls?.[0]?.name ?? '');
  const [start, setStart] = useState(() => toDateTimeLocal(defaultStart()));
  const [end, setEnd] = useState(() => toDateTimeLocal(defaultStart() + 2 * 3600));
  const [duration, setDuration] = useState('120');
  // Duration follows start and end until the organiser types one (a show of 90 minutes in a slot
  // of 2 hours, say).
  const [durationTouched, setDurationTouched] = useState(false);
  const [capacity, setCapacity] = useState('');
  const [seatsPerCustomer, setSeatsPerCustomer] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const hall = location?.Halls?.find((h) => h.name === hallName);
  const startTs = fromDateTimeLocal(start);
  const endTs = fromDateTimeLocal(end);
  const span = startTs !== null && endTs !== null ? minutesBetween(startTs, endTs) : 0;

  const updateTimes = (s: string, e: string) => {
    setStart(s);
    setEnd(e);
    const st = fromDateTimeLocal(s);
    const en = fromDateTimeLocal(e);
    if (!durationTouched && st !== null && en !== null && en > st) setDuration(String(minutesBetween(st, en)));
  };

  const sortedLocations = useMemo(() => [...locations].sort((a, b) => a.Name.localeCompare(b.Name)), [locations]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const v = newEventBody({ name, location, hall, start: startTs, end: endTs, duration, capacity, seatsPerCustomer });
    if (typeof v === 'string') return setError(v);
    setBusy(true);
    try {
      const ev = await api.createEvent(v);
      onCreated(ev);
      setName('');
      setCapacity('');
      setSeatsPerCustomer('');
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="form" onSubmit={submit} onChange={() => setError(null)} noValidate aria-label="New event">
      <Field label="Name" htmlFor="ev-name">
        <input id="ev-name" required value={name} onChange={(e) => setName(e.target.value)} />
      </Field>
      <div className="row">
        <Field label="Location" htmlFor="ev-location">
          <select
            id="ev-location"
            value={locationId}
            onChange={(e) => {
              setLocationId(e.target.value);
              const l = locations.find((x) => x.ID === e.target.value);
              setHallName(l?.Halls?.[0]?.name ?? '');
            }}
          >
            {sortedLocations.map((l) => (
              <option key={l.ID} value={l.ID}>
                {l.Name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Hall" htmlFor="ev-hall">
          <select id="ev-hall" value={hallName} onChange={(e) => setHallName(e.target.value)}>
            {(location?.Halls ?? []).map((h) => (
              <option key={h.name} value={h.name}>
                {h.name} ({seatsText(h.capacity)})
              </option>
            ))}
          </select>
        </Field>
      </div>
      <div className="row">
        <Field label="Starts" htmlFor="ev-start">
          <input id="ev-start" type="datetime-local" required value={start} onChange={(e) => updateTimes(e.target.value, end)} />
        </Field>
        <Field label="Ends" htmlFor="ev-end">
          <input id="ev-end" type="datetime-local" required value={end} min={start} onChange={(e) => updateTimes(start, e.target.value)} />
        </Field>
      </div>
      <div className="row">
        <Field label="Duration (minutes)" htmlFor="ev-duration" hint={span > 0 ? `Start to end is ${formatDuration(span)}.` : undefined}>
          <input
            id="ev-duration"
            type="number"
            min={1}
            inputMode="numeric"
            value={duration}
            onChange={(e) => {
              setDuration(e.target.value);
              setDurationTouched(true);
            }}
          />
        </Field>
        <Field
          label="Capacity (optional)"
          htmlFor="ev-capacity"
          hint={hall ? `Leave empty to use the hall's ${seatsText(hall.capacity)}.` : undefined}
        >
          <input
            id="ev-capacity"
            type="number"
            min={1}
            max={hall?.capacity}
            inputMode="numeric"
            placeholder={hall ? String(hall.capacity) : ''}
            value={capacity}
            onChange={(e) => setCapacity(e.target.value)}
          />
        </Field>
      </div>
      <div className="row">
        <Field
          label="Seats per customer (optional)"
          htmlFor="ev-seats-per-customer"
          hint="The most seats one customer may hold over all their bookings. Leave empty for no limit."
        >
          <input
            id="ev-seats-per-customer"
            type="number"
            min={1}
            max={capacity.trim() !== '' && Number(capacity) > 0 ? Number(capacity) : hall?.capacity}
            inputMode="numeric"
            placeholder="No limit"
            value={seatsPerCustomer}
            onChange={(e) => setSeatsPerCustomer(e.target.value)}
          />
        </Field>
      </div>
      {error && (
        <div className="alert alert-error" role="alert">
          <div>{error}</div>
        </div>
      )}
      <button type="submit" className="btn btn-primary" disabled={busy}>
        {busy ? 'Creating…' : 'Create event'}
      </button>
    </form>
  );
}
