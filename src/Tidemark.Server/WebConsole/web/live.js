// Live updates of the Tidemark web console (ADR 0016): one server-sent-events stream per open page
// (the server caps them per session, sends a heartbeat, and ends them on sign-out). Pages subscribe
// to its events: "summary" (alerts, running jobs, a dashboard version) and "jobs".
import { state, api, ApiError, h, can, cancelJob, bytes, enc } from './ui.js';

let source = null;
const last = new Map();
const listeners = new Map();
const indicator = h('span', { id: 'live', class: 'badge' });

function show(text, title) {
  indicator.textContent = text;
  indicator.title = title;
}

export function liveIndicator() {
  return indicator;
}

export function startLive() {
  if (source) return;
  show('connecting…', 'Connecting live updates');
  source = new EventSource('/api/v1/console/updates');
  source.addEventListener('open', () => show('live', 'Alerts and jobs update as they change'));
  for (const name of ['summary', 'jobs']) {
    source.addEventListener(name, e => {
      const data = JSON.parse(e.data);
      last.set(name, data);
      for (const fn of listeners.get(name) ?? []) fn(data);
    });
  }
  source.addEventListener('error', async () => {
    // CONNECTING: the browser retries by itself. CLOSED: the server refused (signed out, session
    // ended, or too many live pages for this session): find out which.
    if (!source || source.readyState !== EventSource.CLOSED) {
      show('reconnecting…', 'Live updates were interrupted; reconnecting');
      return;
    }
    source = null;
    last.clear();
    try {
      await api('GET', '/console/session'); // a 401 here shows the sign-in form
      show('live updates off', 'This session already has the most pages with live updates open (3); close a tab and reload this one');
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) show('live updates off', 'The server could not be reached');
      else if (state.session) state.sessionEnded('Your session has ended; sign in again.');
    }
  });
}

export function stopLive() {
  source?.close();
  source = null;
  last.clear();
  show('', '');
}

// Calls fn with every event of this name (at once with the latest one, if any); returns the unsubscribe.
export function subscribe(name, fn) {
  if (!listeners.has(name)) listeners.set(name, new Set());
  listeners.get(name).add(fn);
  if (last.has(name)) fn(last.get(name));
  return () => listeners.get(name).delete(fn);
}

// Resolves with the job once it ended; moves the bar with every "jobs" event (or a poll without the
// stream). A cancellable job gets a Cancel button after the text (for roles that may cancel), which
// goes once the job ended, whatever ended it. describe(job) is the text beside the bar (bytes by default).
export function follow(id, bar, text, describe = j => `${bytes(j.done)}${j.total ? ` of ${bytes(j.total)}` : ''}`) {
  return new Promise(resolve => {
    let done = false;
    let cancel = null;
    const show = j => {
      if (!j || done) return;
      if (j.percent !== null && j.percent !== undefined) bar.value = j.percent;
      text.textContent = describe(j);
      if (j.state === 'running' && j.cancellable && can('job.cancel') && cancel === null) {
        cancel = h('button', { type: 'button', class: 'danger', 'aria-label': `Cancel job ${j.id}`, onclick: async () => {
          if (await cancelJob(j, { report: false })) { cancel.disabled = true; cancel.textContent = 'Cancelling…'; }
        } }, 'Cancel');
        text.after(' ', cancel);
      }
      if (j.state !== 'running') { done = true; cancel?.remove(); unsubscribe(); resolve(j); }
    };
    const unsubscribe = subscribe('jobs', list => show(list.find(j => j.id === id)));
    const poll = async () => {
      if (done) return;
      try { show(await api('GET', `/api/v1/jobs/${enc(id)}`)); } catch { /* the stream may still tell */ }
      if (!done) setTimeout(poll, 2000);
    };
    poll();
  });
}
