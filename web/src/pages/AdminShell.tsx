import type { ReactNode } from 'react';
import { useAuth } from '../auth';
import { Empty, Spinner } from '../components/ui';
import { href, type Route } from '../router';

const TABS: { route: Route; label: string }[] = [
  { route: { name: 'admin' }, label: 'Events & sales' },
  { route: { name: 'adminLocations' }, label: 'Locations' },
  { route: { name: 'adminNewEvent' }, label: 'New event' },
];

/** The organiser area: only for users whose Role is "admin". */
export function AdminShell({ current, title, children }: { current: Route['name']; title: string; children: ReactNode }) {
  const { user, checking } = useAuth();
  if (checking) return <Spinner />;
  if (!user) {
    return (
      <Empty title="Organisers only">
        <p>Sign in with an organiser account to manage locations and events.</p>
        <p>
          <a className="btn btn-primary" href={href({ name: 'signin', next: href(TABS.find((t) => t.route.name === current)?.route ?? { name: 'admin' }) })}>
            Sign in
          </a>
        </p>
      </Empty>
    );
  }
  if (user.Role !== 'admin') {
    return (
      <Empty title="Organisers only">
        <p>
          Your account ({user.Email}) is a customer account. <a href={href({ name: 'events' })}>Back to events</a>.
        </p>
      </Empty>
    );
  }
  return (
    <section aria-labelledby="admin-title">
      <div className="page-head">
        <div>
          <p className="eyebrow">Organiser</p>
          <h1 id="admin-title">{title}</h1>
        </div>
      </div>
      <nav className="tabs" aria-label="Organiser">
        {TABS.map((t) => (
          <a key={t.route.name} href={href(t.route)} className="tab" aria-current={t.route.name === current ? 'page' : undefined}>
            {t.label}
          </a>
        ))}
      </nav>
      {children}
    </section>
  );
}
