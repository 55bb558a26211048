import { useRef, useState, type FormEvent } from 'react';
import { api, errorMessage } from '../api';
import { Empty, ErrorBox, Field, Notice, Spinner } from '../components/ui';
import { formatHour, seatsText } from '../format';
import { usePolled, useTitle } from '../hooks';
import { href } from '../router';
import type { Location, NewLocation } from '../types';
import { AdminShell } from './AdminShell';

export function AdminLocationsPage() {
  useTitle('Locations');
  return (
    <AdminShell current="adminLocations" title="Locations">
      <Locations />
    </AdminShell>
  );
}

function Locations() {
  const { data, error, loading, reload } = usePolled((s) => api.listLocations(s), 'locations');
  const [created, setCreated] = useState<Location | null>(null);
  return (
    <div className="two-col">
      <div className="card">
        <h2>New location</h2>
        {created && (
          <Notice kind="success">
            Location “{created.Name}” created. <a href={href({ name: 'adminNewEvent' })}>Create an event there</a>.
          </Notice>
        )}
        <LocationForm
          onCreated={(l) => {
            setCreated(l);
            reload();
          }}
        />
      </div>
      <div>
        <h2>Existing locations</h2>
        {error !== undefined && <ErrorBox error={error} title="Could not load locations." onRetry={reload} />}
        {loading && !data && <Spinner label="Loading locations…" />}
        {data && data.length === 0 && (
          <Empty title="No locations yet">
            <p>Create the first one with the form.</p>
          </Empty>
        )}
        {data && data.length > 0 && (
          <ul className="location-list" aria-label="Locations">
            {data.map((l) => (
              <li key={l.ID} className="card location-card" data-testid="location">
                <h3>{l.Name}</h3>
                <p className="muted">
                  {[l.Address, l.Country].filter(Boolean).join(', ')}
                  {(l.OpenTime || l.CloseTime) ? ` · open ${formatHour(l.OpenTime)}–${formatHour(l.CloseTime)}` : ''}
                </p>
                <ul className="hall-chips" aria-label={`Halls of ${l.Name}`}>
                  {(l.Halls ?? []).map((h) => (
                    <li key={h.name} className="chip">
                      {h.name}
                      {h.location && <span className="muted"> · {h.location}</span>} · {seatsText(h.capacity)}
                    </li>
                  ))}
                </ul>
              </li>
            ))}
          </ul>
        )}
      </div>
    </div>
  );
}

interface HallRow {
  key: number;
  name: string;
  location: string;
  capacity: string;
}

function LocationForm({ onCreated }: { onCreated: (l: Location) => void }) {
  const nextKey = useRef(1);
  const newRow = (): HallRow => ({ key: nextKey.current++, name: '', location: '', capacity: '' });
  const [name, setName] = useState('');
  const [address, setAddress] = useState('');
  const [country, setCountry] = useState('');
  const [open, setOpen] = useState('9');
  const [close, setClose] = useState('23');
  const [halls, setHalls] = useState<HallRow[]>(() => [newRow()]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const setHall = (key: number, patch: Partial<HallRow>) =>
    setHalls((hs) => hs.map((h) => (h.key === key ? { ...h, ...patch } : h)));

  const validate = (): NewLocation | string => {
    if (!name.trim()) return 'Enter the name of the location.';
    const o = Number(open);
    const c = Number(close);
    if (!Number.isInteger(o) || o < 0 || o > 24 || !Number.isInteger(c) || c < 0 || c > 24) {
      return 'Opening and closing times are hours of the day, 0 to 24.';
    }
    if (halls.length === 0) return 'Add at least one hall.';
    const seen = new Set<string>();
    const out = [];
    for (const [i, h] of halls.entries()) {
      const hallName = h.name.trim();
      if (!hallName) return `Hall ${i + 1} needs a name.`;
      if (seen.has(hallName.toLowerCase())) return `Two halls are called “${hallName}”; hall names must differ.`;
      seen.add(hallName.toLowerCase());
      const cap = Number(h.capacity);
      if (!Number.isInteger(cap) || cap <= 0) return `Hall “${hallName}” needs a capacity of at least 1 seat.`;
      out.push({ name: hallName, location: h.location.trim(), capacity: cap });
    }
    return { Name: name.trim(), Address: address.trim(), Country: country.trim(), OpenTime: o, CloseTime: c, Halls: out };
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const v = validate();
    if (typeof v === 'string') return setError(v);
    setBusy(true);
    try {
      const loc = await api.createLocation(v);
      onCreated(loc);
      setName('');
      setAddress('');
      setCountry('');
      setHalls([newRow()]);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="form" onSubmit={submit} onChange={() => setError(null)} noValidate aria-label="New location">
      <Field label="Name" htmlFor="loc-name">
        <input id="loc-name" required value={name} onChange={(e) => setName(e.target.value)} />
      </Field>
      <div className="row">
        <Field label="Address" htmlFor="loc-address">
          <input id="loc-address" autoComplete="street-address" value={address} onChange={(e) => setAddress(e.target.value)} />
        </Field>
        <Field label="Country" htmlFor="loc-country">
          <input id="loc-country" autoComplete="country-name" value={country} onChange={(e) => setCountry(e.target.value)} />
        </Field>
      </div>
      <div className="row">
        <Field label="Opens at (hour)" htmlFor="loc-open">
          <input id="loc-open" type="number" min={0} max={24} inputMode="numeric" value={open} onChange={(e) => setOpen(e.target.value)} />
        </Field>
        <Field label="Closes at (hour)" htmlFor="loc-close">
          <input id="loc-close" type="number" min={0} max={24} inputMode="numeric" value={close} onChange={(e) => setClose(e.target.value)} />
        </Field>
      </div>
      <fieldset className="halls">
        <legend>Halls</legend>
        {halls.map((h, i) => (
          <div className="hall-row" key={h.key} data-testid="hall-row">
            <Field label={`Hall ${i + 1} name`} htmlFor={`hall-name-${h.key}`}>
              <input id={`hall-name-${h.key}`} value={h.name} onChange={(e) => setHall(h.key, { name: e.target.value })} />
            </Field>
            <Field label="Where in the building" htmlFor={`hall-loc-${h.key}`}>
              <input
                id={`hall-loc-${h.key}`}
                placeholder="e.g. 1st floor"
                value={h.location}
                onChange={(e) => setHall(h.key, { location: e.target.value })}
              />
            </Field>
            <Field label="Capacity" htmlFor={`hall-cap-${h.key}`}>
              <input
                id={`hall-cap-${h.key}`}
                type="number"
                min={1}
                inputMode="numeric"
                value={h.capacity}
                onChange={(e) => setHall(h.key, { capacity: e.target.value })}
              />
            </Field>
            <button
              type="button"
              className="btn btn-small btn-danger-ghost hall-remove"
              onClick={() => setHalls((hs) => hs.filter((x) => x.key !== h.key))}
              disabled={halls.length === 1}
              aria-label={`Remove hall ${i + 1}`}
            >
              Remove
            </button>
          </div>
        ))}
        <button type="button" className="btn btn-small btn-ghost" onClick={() => setHalls((hs) => [...hs, newRow()])}>
          + Add hall
        </button>
      </fieldset>
      {error && (
        <div className="alert alert-error" role="alert">
          <div>{error}</div>
        </div>
      )}
      <button type="submit" className="btn btn-primary" disabled={busy}>
        {busy ? 'Creating…' : 'Create location'}
      </button>
    </form>
  );
}
