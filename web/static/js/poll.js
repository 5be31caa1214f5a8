// Polling: a task that runs now, then again `every` ms after each run ends, paused
// while the tab is hidden, stopped for good when its page goes away.

/** poll starts fn(signal) on a schedule; returns {stop, now}. */
export function poll(fn, every) {
  let timer = 0;
  let running = false;
  let stopped = false;
  const ctl = new AbortController();
  const run = async () => {
    clearTimeout(timer);
    if (stopped || running) return;
    if (document.hidden) return; // visibilitychange restarts it
    running = true;
    try {
      await fn(ctl.signal);
    } catch (e) {
      if (e?.name !== 'AbortError') console.warn('poll:', e);
    } finally {
      running = false;
      if (!stopped) timer = setTimeout(run, every);
    }
  };
  const onVisible = () => { if (!document.hidden) run(); };
  document.addEventListener('visibilitychange', onVisible);
  run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      ctl.abort();
      document.removeEventListener('visibilitychange', onVisible);
    },
    now: run,
  };
}
