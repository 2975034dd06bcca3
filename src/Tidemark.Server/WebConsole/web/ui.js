// Shared helpers of the Tidemark web console's modules (ADR 0016): DOM building (text is always
// set as textContent, never parsed as HTML), the API client that adds the session's CSRF token to
// every change, role checks, formatting, and the modal form. app.js owns routing and sign-in and
// plugs itself in through `state`.
export const main = document.getElementById('main');
export const status = document.getElementById('status');

// session: the signed-in session (name, role, csrf, adminOnly); sessionEnded(message) shows the
// sign-in form; rerender() draws the current page again (after a change).
export const state = { session: null, sessionEnded: () => {}, rerender: async () => {} };

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `the server answered ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

// background: the page asks by itself (a live reload, polling), which must not count as use of the
// session, so an unattended tab still lets the session end after its idle hour.
export async function api(method, path, body, { background = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (background) headers['X-Tidemark-Background'] = '1';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.session?.csrf) headers['X-Tidemark-CSRF'] = state.session.csrf;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (res.status === 401 && path !== '/console/session') {
    state.session = null;
    state.sessionEnded('Your session has ended; sign in again.');
    throw new ApiError(401, data);
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export function say(message, kind = 'info') {
  status.replaceChildren(h('div', { class: kind }, message));
}

export function fail(err) {
  say(err instanceof ApiError ? err.message : `Failed: ${err.message || err}`, 'error');
}

// What the signed-in role may do; the server refuses anything else anyway.
export function can(endpoint) {
  const session = state.session;
  if (!session) return false;
  if (session.role === 'admin') return true;
  if (session.role === 'operator') return !session.adminOnly.includes(endpoint);
  return false;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 || n >= 100 ? 0 : 1)} ${units[i]}`;
}

export function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(text || '');
  if (!m) return null;
  const power = ' KMGTP'.indexOf((m[2] || ' ').toUpperCase());
  return Math.round(parseFloat(m[1]) * 1024 ** power);
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function ago(iso) {
  if (!iso) return 'never';
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 90) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export const enc = encodeURIComponent;

// replaceChildren would print a skipped (null) part as the text "null".
export function show(...nodes) {
  main.replaceChildren(...nodes.flat().filter(n => n !== null && n !== undefined && n !== false));
}

// A modal form: resolves with the field values, or null when cancelled. With mustType, the confirm
// button stays disabled until that exact text is typed (deleting a volume).
export function ask({ title, text, fields = [], confirm = 'OK', danger = false, mustType = null }) {
  return new Promise(resolve => {
    const inputs = {};
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', disabled: mustType !== null }, confirm);
    const form = h('form', { method: 'dialog' },
      h('h2', {}, title),
      text ? h('p', {}, text) : null,
      fields.map(f => {
        const input = f.type === 'checkbox'
          ? h('input', { type: 'checkbox', name: f.name, checked: !!f.value })
          : f.options
            ? h('select', { name: f.name }, f.options.map(o => h('option', { value: o, selected: o === f.value }, o)))
            : h('input', { name: f.name, value: f.value ?? '', required: f.required, placeholder: f.placeholder ?? '' });
        inputs[f.name] = input;
        return h('p', {}, h('label', { class: f.type === 'checkbox' ? 'inline' : '' }, f.type === 'checkbox' ? [input, f.label] : [f.label, input]));
      }),
      mustType !== null ? h('p', {}, h('label', {}, `Type ${mustType} to confirm`, inputs.__confirm = h('input', {
        name: 'confirm', autocomplete: 'off', oninput: e => { ok.disabled = e.target.value !== mustType; },
      }))) : null,
      h('p', { class: 'actions' }, ok, h('button', { type: 'button', onclick: () => { dialog.close(); } }, 'Cancel')));
    const dialog = h('dialog', { 'aria-label': title }, form);
    let result = null;
    form.addEventListener('submit', () => {
      result = {};
      for (const [k, el] of Object.entries(inputs)) result[k] = el.type === 'checkbox' ? el.checked : el.value;
    });
    dialog.addEventListener('close', () => { dialog.remove(); resolve(result); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Asks before cancelling a running job, then asks the server to (POST /api/v1/jobs/ID/cancel). The
// job ends `cancelled` at its next safe point, which the live stream then shows; true when asked.
// report: false where the caller shows the outcome next to the job's own progress (the status line
// may be holding that progress bar).
export async function cancelJob(job, { report = true } = {}) {
  const what = `${job.kind}${job.subject ? ` ${job.subject}` : ''}`;
  const ok = await ask({
    title: `Cancel job ${job.id}?`,
    text: `${what} stops at its next safe point; what it already did stays consistent`
      + (job.kind.startsWith('replica.') ? ' (a cancelled sync resumes where it stopped on the next sync).' : '.'),
    confirm: 'Cancel job', danger: true,
  });
  if (!ok) return false;
  try {
    await api('POST', `/api/v1/jobs/${enc(job.id)}/cancel`);
    if (report) say(`Job ${job.id} (${what}) asked to stop; it ends at its next safe point.`);
    return true;
  } catch (err) {
    fail(err);
    return false;
  }
}

// Runs a change, reports its outcome, then re-renders the page.
export async function act(label, fn) {
  try {
    await fn();
    say(label);
    await state.rerender();
  } catch (err) {
    fail(err);
  }
}
