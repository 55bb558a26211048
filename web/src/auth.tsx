import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { ApiError, api, tokenStore } from './api';
import type { User } from './types';

interface AuthState {
  user: User | null;
  /** True while a stored token is being checked at start-up. */
  checking: boolean;
  signIn: (email: string, password: string) => Promise<User>;
  signOut: () => void;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [user, setUser] = useState<User | null>(null);
  const [checking, setChecking] = useState(() => tokenStore.get() !== null);

  const loadMe = useCallback(async () => {
    if (!tokenStore.get()) {
      setUser(null);
      setChecking(false);
      return;
    }
    try {
      setUser(await api.me());
    } catch (err) {
      // 401 already cleared the token; other failures (server down) keep it for the next try.
      if (err instanceof ApiError && (err.status === 401 || err.status === 403 || err.status === 404)) {
        tokenStore.clear();
      }
      setUser(null);
    } finally {
      setChecking(false);
    }
  }, []);

  useEffect(() => {
    void loadMe();
    // Token cleared elsewhere (a 401 on any call, sign-out in another tab) → show signed out.
    const unsub = tokenStore.subscribe(() => {
      if (!tokenStore.get()) setUser(null);
    });
    const onStorage = (e: StorageEvent) => {
      if (e.key === null || e.key.startsWith('myevents.')) void loadMe();
    };
    window.addEventListener('storage', onStorage);
    return () => {
      unsub();
      window.removeEventListener('storage', onStorage);
    };
  }, [loadMe]);

  const signIn = useCallback(async (email: string, password: string) => {
    const res = await api.login(email, password);
    tokenStore.set(res.Token, res.ExpiresAt);
    try {
      const me = await api.me();
      setUser(me);
      return me;
    } catch (err) {
      tokenStore.clear();
      throw err;
    }
  }, []);

  const signOut = useCallback(() => {
    tokenStore.clear();
    setUser(null);
  }, []);

  const value = useMemo(() => ({ user, checking, signIn, signOut }), [user, checking, signIn, signOut]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth outside AuthProvider');
  return ctx;
}
