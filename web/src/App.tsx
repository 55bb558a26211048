import { useAuth } from './auth';
import { href, isSection, navigate, useRoute, type Route } from './router';
import { EventListPage } from './pages/EventListPage';
import { EventPage } from './pages/EventPage';
import { BookingsPage } from './pages/BookingsPage';
import { BookingPage } from './pages/BookingPage';
import { SignInPage, SignUpPage } from './pages/AuthPages';
import { AdminEventsPage } from './pages/AdminEventsPage';
import { AdminLocationsPage } from './pages/AdminLocationsPage';
import { AdminNewEventPage } from './pages/AdminNewEventPage';
import { Empty } from './components/ui';

export function App() {
  const route = useRoute();
  return (
    <>
      <a className="skip-link" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
        Skip to content
      </a>
      <Header route={route} />
      <main id="main" tabIndex={-1} className="container">
        <Page route={route} />
      </main>
      <footer className="footer container">MyEvents · tickets for concerts, theatre and sport</footer>
    </>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.name) {
    case 'events':
      return <EventListPage />;
    case 'event':
      return <EventPage id={route.id} />;
    case 'bookings':
      return <BookingsPage />;
    case 'booking':
      return <BookingPage id={route.id} token={route.token} />;
    case 'signin':
      return <SignInPage next={route.next} />;
    case 'signup':
      return <SignUpPage next={route.next} />;
    case 'admin':
      return <AdminEventsPage />;
    case 'adminLocations':
      return <AdminLocationsPage />;
    case 'adminNewEvent':
      return <AdminNewEventPage />;
    case 'notFound':
      return (
        <Empty title="Page not found">
          <p>
            There is nothing at <code>{route.path}</code>. <a href={href({ name: 'events' })}>See all events</a>.
          </p>
        </Empty>
      );
  }
}

function Header({ route }: { route: Route }) {
  const { user, signOut, checking } = useAuth();
  const link = (target: 'events' | 'bookings' | 'admin', to: Route, label: string) => (
    <a href={href(to)} className="nav-link" aria-current={isSection(route, target) ? 'page' : undefined}>
      {label}
    </a>
  );
  return (
    <header className="header">
      <div className="container header-inner">
        <a href="#/" className="brand" aria-label="MyEvents home">
          <span className="brand-mark" aria-hidden="true">
            ◆
          </span>
          MyEvents
        </a>
        <nav className="nav" aria-label="Main">
          {link('events', { name: 'events' }, 'Events')}
          {user && link('bookings', { name: 'bookings' }, user.Role === 'admin' ? 'Bookings' : 'My bookings')}
          {user?.Role === 'admin' && link('admin', { name: 'admin' }, 'Organiser')}
        </nav>
        <div className="account">
          {checking ? null : user ? (
            <>
              <span className="who" title={user.Email}>
                {user.Name || user.Email}
                {user.Role === 'admin' && <span className="role-tag">organiser</span>}
              </span>
              <button
                type="button"
                className="btn btn-small btn-ghost"
                onClick={() => {
                  signOut();
                  navigate({ name: 'events' });
                }}
              >
                Sign out
              </button>
            </>
          ) : (
            <>
              <a className="btn btn-small btn-ghost" href={href({ name: 'signin' })}>
                Sign in
              </a>
              <a className="btn btn-small btn-primary" href={href({ name: 'signup' })}>
                Sign up
              </a>
            </>
          )}
        </div>
      </div>
    </header>
  );
}
