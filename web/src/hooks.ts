import { useCallback, useEffect, useRef, useState } from 'react';

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Load again now (keeps showing the old data meanwhile). */
  reload: () => void;
}

/**
 * Loads with `load` when `key` changes and then every `intervalMs` (0 = once). A poll never overlaps
 * the previous one, and an answer that arrives after the component moved on is dropped.
 *
 * Live seat counts use short polling rather than SSE or WebSockets on purpose: it is the simplest
 * thing that works through every proxy and with every backend mode; SSE may come later.
 */
export function usePolled<T>(load: (signal: AbortSignal) => Promise<T>, key: string, intervalMs = 0): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean; key: string }>({
    loading: true,
    key,
  });
  const loadRef = useRef(load);
  loadRef.current = load;
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => {
    let stopped = false;
    let inFlight: AbortController | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setState((s) => (s.key === key ? { ...s, loading: s.data === undefined } : { loading: true, key }));

    const run = async () => {
      inFlight = new AbortController();
      try {
        const data = await loadRef.current(inFlight.signal);
        if (!stopped) setState({ data, loading: false, key });
      } catch (error) {
        if (stopped || (error instanceof DOMException && error.name === 'AbortError')) return;
        // Keep the last good data on a failed poll; show the error next to it.
        setState((s) => ({ data: s.key === key ? s.data : undefined, error, loading: false, key }));
      } finally {
        inFlight = null;
        if (!stopped && intervalMs > 0) timer = setTimeout(run, intervalMs);
      }
    };
    void run();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      inFlight?.abort();
    };
  }, [key, intervalMs, tick]);

  const current = state.key === key;
  return {
    data: current ? state.data : undefined,
    error: current ? state.error : undefined,
    loading: current ? state.loading : true,
    reload,
  };
}

/** Sets document.title for the page being shown. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · MyEvents` : 'MyEvents';
  }, [title]);
}
