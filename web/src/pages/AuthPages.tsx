import { useState, type FormEvent } from 'react';
import { ApiError, api, errorMessage } from '../api';
import { useAuth } from '../auth';
import { Field, Notice } from '../components/ui';
import { useTitle } from '../hooks';
import { href, navigate } from '../router';

export function SignInPage({ next }: { next?: string }) {
  useTitle('Sign in');
  const { signIn, user } = useAuth();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!email.trim() || !password) {
      setError('Enter your e-mail address and password.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const me = await signIn(email.trim(), password);
      navigate(next ?? (me.Role === 'admin' ? href({ name: 'admin' }) : href({ name: 'events' })));
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'Wrong e-mail address or password.' : errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="auth card" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in</h1>
      {user && <Notice>You are signed in as {user.Email}.</Notice>}
      <form className="form" onSubmit={submit} noValidate>
        <Field label="E-mail" htmlFor="signin-email">
          <input id="signin-email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </Field>
        <Field label="Password" htmlFor="signin-password">
          <input
            id="signin-password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </Field>
        {error && (
          <div className="alert alert-error" role="alert">
            <div>{error}</div>
          </div>
        )}
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <p className="auth-switch">
        New here? <a href={href({ name: 'signup', next })}>Create an account</a>
      </p>
    </section>
  );
}

const MIN_PASSWORD = 8;

export function SignUpPage({ next }: { next?: string }) {
  useTitle('Sign up');
  const { signIn } = useAuth();
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!name.trim()) return setError('Enter your name.');
    if (!/^[^\s@]+@[^\s@]+$/.test(email.trim())) return setError('Enter a valid e-mail address.');
    if (password.length < MIN_PASSWORD) return setError(`Choose a password of at least ${MIN_PASSWORD} characters.`);
    setBusy(true);
    try {
      await api.register(email.trim(), password, name.trim());
      await signIn(email.trim(), password);
      navigate(next ?? href({ name: 'events' }));
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 409
          ? 'An account with this e-mail address already exists. Sign in instead.'
          : errorMessage(err),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="auth card" aria-labelledby="signup-title">
      <h1 id="signup-title">Create an account</h1>
      <p className="lead">Keep all your bookings in one place.</p>
      <form className="form" onSubmit={submit} noValidate>
        <Field label="Name" htmlFor="signup-name">
          <input id="signup-name" autoComplete="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="E-mail" htmlFor="signup-email">
          <input id="signup-email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </Field>
        <Field label="Password" htmlFor="signup-password" hint={`At least ${MIN_PASSWORD} characters.`}>
          <input
            id="signup-password"
            type="password"
            autoComplete="new-password"
            minLength={MIN_PASSWORD}
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </Field>
        {error && (
          <div className="alert alert-error" role="alert">
            <div>{error}</div>
          </div>
        )}
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Creating account…' : 'Create account'}
        </button>
      </form>
      <p className="auth-switch">
        Already have an account? <a href={href({ name: 'signin', next })}>Sign in</a>
      </p>
    </section>
  );
}
