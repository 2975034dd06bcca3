// Tidemark web console (ADR 0016). Plain ES modules, no framework: every page is built with DOM
// calls (text is always set as textContent, never parsed as HTML) from the same REST API the CLI
// uses; every change is an API request carrying the session's CSRF token, so the server's role
// checks and audit log apply exactly as for `tidemark`. This module routes and signs in; ui.js has
// the helpers, live.js the live updates, wizards.js the multi-step wizards.
import { main, status, state, h, api, ApiError, say, fail, can, bytes, parseSize, when, ago, duration, enc, show, ask, act, cancelJob } from './ui.js';
import { startLive, stopLive, subscribe, liveIndicator } from './live.js';
import { policyWizard, recoveryWizard } from './wizards.js';
import { replicationWizard, disasterWizard, replicationPage } from './replication.js';

const nav = document.getElementById('nav');
const who = document.getElementById('who');
let leavePage = null; // stops the current page's live subscription or polling when the route changes

// ---------- sign-in, navigation ----------

function showSignIn(message) {
  stopLive();
  nav.hidden = true;
  who.hidden = true;
  leavePage?.();
  leavePage = null;
  const token = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, size: 50 });
  const form = h('form', {
    onsubmit: async e => {
      e.preventDefault();
      try {
        state.session = await api('POST', '/console/session', { token: token.value });
        status.replaceChildren();
        await start();
      } catch (err) {
        fail(err);
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', {}, 'Sign in with your API token. Everything you do is recorded in the audit log under the token\'s name. ',
    'The first admin token is in the server\'s data directory (DATA/token); an admin makes named ones with ', h('code', {}, 'tidemark token create NAME --role ROLE'), '.'),
  h('label', { for: 'token' }, 'API token', token),
  h('p', {}, h('button', { type: 'submit', class: 'primary' }, 'Sign in')));
  main.replaceChildren(form);
  if (message) say(message, 'error');
  token.focus();
}

const pages = [
  ['#/', 'Dashboard'],
  ['#/volumes', 'Volumes'],
  ['#/events', 'Events'],
  ['#/jobs', 'Jobs'],
  ['#/policies', 'Policies'],
  ['#/replication', 'Replication'],
];

function renderChrome() {
  const links = [...pages];
  if (can('volume.create')) links.push(['#/wizard/protected-volume', 'New protected volume']);
  if (can('policy.create')) links.push(['#/wizard/policy', 'Protection policy']);
  if (can('view.create')) links.push(['#/wizard/recovery', 'Recover']);
  if (can('replica.create')) links.push(['#/wizard/replication', 'Replication set-up']);
  links.push(['#/disaster', 'Disaster recovery']);
  nav.replaceChildren(...links.map(([href, text]) => h('a', { href }, text)));
  nav.hidden = false;
  who.replaceChildren(
    liveIndicator(),
    h('span', {}, `${state.session.name} (${state.session.role})`),
    h('button', {
      type: 'button',
      onclick: async () => {
        stopLive();
        try { await api('DELETE', '/console/session'); } catch { /* signed out either way */ }
        state.session = null;
        showSignIn();
      },
    }, 'Sign out'));
  who.hidden = false;
}

async function start() {
  renderChrome();
  startLive();
  await route();
}

async function route() {
  if (!state.session) return;
  leavePage?.();
  leavePage = null;
  const hash = location.hash || '#/';
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === hash.split('?')[0] || (hash.startsWith('#/volumes/') && a.getAttribute('href') === '#/volumes')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const parts = hash.slice(2).split('?')[0].split('/').map(decodeURIComponent);
  try {
    if (parts[0] === '' ) await dashboard();
    else if (parts[0] === 'volumes' && parts[1]) await snapshots(parts[1]);
    else if (parts[0] === 'volumes') await volumes();
    else if (parts[0] === 'events') await events();
    else if (parts[0] === 'jobs') await jobs();
    else if (parts[0] === 'policies') await policies();
    else if (parts[0] === 'replication') await replicationPage();
    else if (parts[0] === 'wizard' && parts[1] === 'protected-volume') wizard();
    else if (parts[0] === 'wizard' && parts[1] === 'policy') await policyWizard(new URLSearchParams(hash.split('?')[1] || ''));
    else if (parts[0] === 'wizard' && parts[1] === 'replication') await replicationWizard();
    else if (parts[0] === 'disaster') await disasterWizard();
    else if (parts[0] === 'wizard' && parts[1] === 'recovery') await recoveryWizard(new URLSearchParams(hash.split('?')[1] || ''));
    else main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the dashboard')));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) fail(err);
  }
}

// ---------- dashboard ----------

// The dashboard draws once from /api/v1/console/dashboard, then follows the live stream: alerts and
// the running-jobs count change in place at once; the rest is reloaded when the stream's version
// says the pool or the event log moved, at most every 5 s (a busy server must not turn every open
// dashboard into a reload loop).
async function dashboard() {
  let d = await api('GET', '/api/v1/console/dashboard');
  const alerts = h('div', { id: 'alerts' });
  const thresholds = h('div', { id: 'thresholds' });
  const cards = h('div', { class: 'cards' });
  const chart = h('div', { class: 'chart', id: 'capacity-chart', role: 'img' });
  const volumesPart = h('div', {});
  const eventsPart = h('div', {});
  let samples = -1;
  const draw = () => {
    const pool = d.pool;
    const usedShare = pool.capacityBytes ? pool.usedBytes / pool.capacityBytes : 0;
    const unprotected = d.volumes.filter(v => v.snapshots === 0).length;
    const fullAt = (d.thresholds?.poolFullPercent ?? 85) / 100;
    cards.replaceChildren(
      h('div', { class: 'card' }, h('div', {}, 'Pool used'), h('div', { class: 'v' }, `${bytes(pool.usedBytes)} of ${bytes(pool.capacityBytes)}`),
        h('meter', { min: 0, max: 1, low: Math.min(0.7, fullAt - 0.05), high: fullAt, optimum: 0.2, value: usedShare, 'aria-label': 'Pool used' }), ` ${(usedShare * 100).toFixed(0)}%`),
      h('div', { class: 'card' }, h('div', {}, 'Volumes'), h('div', { class: 'v' }, pool.volumes)),
      h('div', { class: 'card' }, h('div', {}, 'Snapshots'), h('div', { class: 'v' }, pool.snapshots)),
      h('div', { class: 'card' }, h('div', {}, 'Without any snapshot'), h('div', { class: 'v' + (unprotected ? ' warn' : '') }, unprotected)),
      h('div', { class: 'card' }, h('div', {}, 'Running jobs'), h('div', { class: 'v', id: 'running-jobs' }, h('a', { href: '#/jobs' }, d.runningJobs))));
    drawAlerts(alerts, d.alerts);
    drawThresholds(thresholds, d.thresholds);
    volumesPart.replaceChildren(volumeTable(d.volumes));
    eventsPart.replaceChildren(eventTable(d.events));
    if (d.capacity.length !== samples) {
      samples = d.capacity.length;
      chart.replaceChildren();
      chart.setAttribute('aria-label', `Pool capacity and use over time: ${samples} samples`);
      drawCapacity(chart, d.capacity);
    }
  };
  main.replaceChildren(
    h('h1', {}, 'Dashboard'), cards,
    h('h2', {}, 'Alerts'), alerts, thresholds,
    h('h2', {}, 'Capacity'), chart,
    h('h2', {}, 'Protection per volume'), volumesPart,
    h('h2', {}, 'Recent events'), eventsPart);
  draw();
  let version = d.version;
  let reloading = false;
  let lastReload = Date.now();
  let timer = null;
  const reload = async () => {
    timer = null;
    if (reloading) return;
    reloading = true;
    try {
      d = await api('GET', '/api/v1/console/dashboard', undefined, { background: true });
      version = d.version;
      lastReload = Date.now();
      draw();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) fail(err);
    } finally {
      reloading = false;
    }
  };
  const unsubscribe = subscribe('summary', summary => {
    drawAlerts(alerts, summary.alerts);
    const running = document.getElementById('running-jobs');
    if (running) running.replaceChildren(h('a', { href: '#/jobs' }, summary.runningJobs));
    if (summary.version !== version && timer === null) timer = setTimeout(reload, Math.max(0, 5000 - (Date.now() - lastReload)));
  });
  leavePage = () => { unsubscribe(); clearTimeout(timer); };
}

function drawAlerts(el, list) {
  el.replaceChildren(list.length
    ? h('ul', { class: 'alerts', 'aria-label': 'Alerts' }, list.map(a => h('li', { class: a.severity === 'error' ? 'bad' : 'warn', 'data-kind': a.kind },
      h('span', { class: 'badge' }, a.severity), ' ', h('a', { href: a.link }, a.subject), ': ', a.message)))
    : h('p', { class: 'ok' }, 'No alerts.'));
}

// The thresholds the alerts above are raised at; an admin changes them here (PUT /api/v1/alerts/thresholds,
// validated by the server, which names the allowed range when it refuses).
function drawThresholds(el, t) {
  if (!t) { el.replaceChildren(); return; }
  el.replaceChildren(h('p', { class: 'muted' },
    `Alerts at: pool ${t.poolFullPercent}% full; a job without progress for ${t.stalledJob}; a replica behind by more than ${t.rpo} (or twice its sync interval). `,
    t.source === 'api' ? 'Set through the console or API.' : 'From the config file.', ' ',
    can('alerts.thresholds') ? h('button', { type: 'button', onclick: () => changeThresholds(t) }, 'Change thresholds') : null));
}

async function changeThresholds(t) {
  const r = await ask({
    title: 'Alert thresholds', text: 'Kept in the pool; they win over the config file from now on.', confirm: 'Save',
    fields: [
      { name: 'poolFull', label: 'Pool nearly full at (% used, 1-100)', value: String(t.poolFullPercent), required: true },
      { name: 'stalledJob', label: 'Job stalled after no progress for (e.g. 10m; 1s-30d)', value: t.stalledJob, required: true },
      { name: 'rpo', label: 'Replica RPO without a sync interval (e.g. 1h or 2d; 1s-30d)', value: t.rpo, required: true },
    ],
  });
  if (!r) return;
  const percent = Number(r.poolFull.trim().replace(/%$/, ''));
  if (r.poolFull.trim() === '' || !Number.isFinite(percent)) { say('Pool nearly full must be a number of percent, e.g. 90.', 'error'); return; }
  await act('Alert thresholds saved.', () => api('PUT', '/api/v1/alerts/thresholds', { poolFullPercent: percent, stalledJob: r.stalledJob.trim(), rpo: r.rpo.trim() }));
}

function drawCapacity(el, samples) {
  if (samples.length === 0 || typeof uPlot === 'undefined') {
    el.replaceChildren(h('p', { class: 'muted' }, 'No capacity history recorded yet (a sample is taken every 5 minutes).'));
    return;
  }
  const x = samples.map(s => new Date(s.time).getTime() / 1000);
  const gib = v => v / 1024 ** 3;
  const data = [x, samples.map(s => gib(s.capacityBytes)), samples.map(s => gib(s.usedBytes))];
  const width = Math.max(300, Math.min(1150, el.clientWidth || 800));
  // uPlot draws on a canvas; the table of the same numbers below is what a screen reader gets.
  new uPlot({
    width, height: 220,
    // One sample (a fresh server) would otherwise stretch the time axis over years.
    scales: { x: { time: true, range: (u, min, max) => (max - min < 600 ? [min - 3600, max + 300] : [min, max]) } },
    series: [{}, { label: 'Capacity GiB', stroke: '#0b5cad', width: 2 }, { label: 'Used GiB', stroke: '#a4000f', width: 2, fill: 'rgba(164,0,15,0.08)' }],
    axes: [{}, { label: 'GiB' }],
  }, data, el);
  const last = samples[samples.length - 1];
  el.append(h('p', { class: 'muted' }, `${samples.length} samples since ${when(samples[0].time)}; latest: ${bytes(last.usedBytes)} used of ${bytes(last.capacityBytes)}.`));
}

function volumeTable(vols) {
  const shown = vols.slice(0, 200);
  const body = h('tbody', {}, shown.map(v => h('tr', {},
    h('td', {}, h('a', { href: `#/volumes/${enc(v.name)}` }, v.name), v.kind !== 'volume' ? h('span', { class: 'badge' }, v.kind) : null),
    h('td', { class: 'num' }, bytes(v.sizeBytes)),
    h('td', { class: 'num' }, bytes(v.allocatedBytes)),
    h('td', { class: 'num' }, v.snapshots),
    h('td', { class: v.lastSnapshotAt ? '' : 'warn' }, v.lastSnapshot ? `${v.lastSnapshot}, ${ago(v.lastSnapshotAt)}` : 'none'),
    verifiedCell(v),
    h('td', {}, v.policy ?? h('span', { class: 'muted' }, 'none')),
    h('td', {}, v.replicatedTo ? `${v.replicatedTo}, lag ${duration(v.replicationLagSeconds)}` : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'num' }, v.exports))));
  return h('div', {},
    h('table', {},
      h('caption', { class: 'muted' }, vols.length > shown.length ? `The first ${shown.length} of ${vols.length} volumes; the Volumes page lists all.` : ''),
      h('thead', {}, h('tr', {}, ['Volume', 'Size', 'Used', 'Snapshots', 'Last snapshot', 'Last verified', 'Policy', 'Replication', 'Exports'].map((t, i) => h('th', { scope: 'col', class: [1, 2, 3, 8].includes(i) ? 'num' : '' }, t)))),
      body));
}

// The volume's newest verification (ADR 0015): which snapshot, its verdict and when; a failure shows its reason.
function verifiedCell(v) {
  const r = v.verification;
  if (!r) return h('td', {}, h('span', { class: 'muted' }, 'never'));
  const verdict = r.verdict === 'passed' ? 'ok' : r.verdict === 'failed' ? 'bad' : 'warn';
  return h('td', { 'data-verdict': r.verdict },
    h('span', { class: verdict }, r.verdict), ` ${v.verifiedSnapshot}, ${ago(r.at)}`,
    r.reason ? h('div', { class: 'muted' }, r.reason) : null);
}

function eventTable(list) {
  if (!list.length) return h('p', { class: 'muted' }, 'No events.');
  return h('table', {},
    h('thead', {}, h('tr', {}, ['Time', 'Kind', 'Subject', 'Actor', 'Outcome', 'Message'].map(t => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, list.map(e => h('tr', {},
      h('td', {}, when(e.time)), h('td', {}, e.kind), h('td', {}, e.subject ?? ''), h('td', {}, e.actor),
      h('td', { class: e.outcome === 'ok' ? 'ok' : 'bad' }, e.outcome), h('td', {}, e.message)))));
}

// ---------- volumes ----------

async function volumes() {
  const [vols, exports] = await Promise.all([api('GET', '/api/v1/volumes'), api('GET', '/api/v1/exports')]);
  const children = [h('h1', {}, 'Volumes')];
  if (can('volume.create')) {
    const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._-]{1,64}' });
    const size = h('input', { name: 'size', required: true, value: '10G', size: 8 });
    const block = h('select', { name: 'block' }, h('option', { value: '512' }, '512'), h('option', { value: '4096' }, '4096'));
    children.push(h('form', {
      'aria-label': 'Create a volume',
      onsubmit: e => {
        e.preventDefault();
        const sizeBytes = parseSize(size.value);
        if (!sizeBytes) { say('Size must be a number with an optional unit, e.g. 10G or 512M.', 'error'); return; }
        act(`Volume ${name.value} created.`, () => api('POST', '/api/v1/volumes', { name: name.value, sizeBytes, logicalBlockSizeBytes: +block.value }));
      },
    }, h('fieldset', {}, h('legend', {}, 'Create a volume'),
      h('label', {}, 'Name', name), h('label', {}, 'Size (e.g. 10G)', size), h('label', {}, 'Block size', block),
      h('button', { type: 'submit', class: 'primary' }, 'Create'))));
  }
  children.push(h('table', {},
    h('thead', {}, h('tr', {}, ['Volume', 'Size', 'Used', 'Snapshots', 'Exports', 'Actions'].map(t => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, vols.map(v => h('tr', {},
      h('td', {}, h('a', { href: `#/volumes/${enc(v.name)}` }, v.name), v.kind !== 'volume' ? h('span', { class: 'badge' }, v.kind) : null),
      h('td', { class: 'num' }, bytes(v.sizeBytes)),
      h('td', { class: 'num' }, bytes(v.allocatedBytes)),
      h('td', { class: 'num' }, v.snapshots),
      h('td', {}, v.exports.join(', ')),
      h('td', { class: 'actions' },
        h('a', { href: `#/volumes/${enc(v.name)}` }, 'Snapshots'),
        can('volume.resize') ? h('button', { type: 'button', onclick: () => resize(v) }, 'Resize') : null,
        can('export.create') ? h('button', { type: 'button', onclick: () => exportVolume(v.name) }, 'Export') : null,
        can('volume.delete') ? h('button', { type: 'button', class: 'danger', onclick: () => deleteVolume(v.name) }, 'Delete') : null))))));
  children.push(h('h2', {}, 'Exports'), exports.length === 0 ? h('p', { class: 'muted' }, 'No exports.') : h('table', {},
    h('thead', {}, h('tr', {}, ['Export', 'Protocol', 'Target', 'Access', 'State', 'Address', ''].map(t => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, exports.map(x => h('tr', {},
      h('td', {}, x.name), h('td', {}, x.protocol), h('td', {}, x.target), h('td', {}, x.readOnly ? 'read-only' : 'read-write'),
      h('td', { class: x.problem ? 'bad' : '' }, x.problem ? `${x.state}: ${x.problem}` : x.state),
      h('td', {}, h('code', {}, x.url ?? x.iqn ?? '')),
      h('td', {}, can('export.delete') ? h('button', { type: 'button', class: 'danger', onclick: () => removeExport(x.name) }, 'Remove') : null))))));
  show(children);
}

async function resize(v) {
  const r = await ask({ title: `Resize ${v.name}`, text: `Now ${bytes(v.sizeBytes)}.`, fields: [{ name: 'size', label: 'New size (e.g. 20G)', value: bytes(v.sizeBytes).replace(/ ?i?B$/, '').replace(' ', ''), required: true }], confirm: 'Resize' });
  if (!r) return;
  const sizeBytes = parseSize(r.size);
  if (!sizeBytes) { say('Size must be a number with an optional unit, e.g. 20G.', 'error'); return; }
  await act(`Volume ${v.name} resized to ${bytes(sizeBytes)}.`, () => api('POST', `/api/v1/volumes/${enc(v.name)}/resize`, { sizeBytes }));
}

async function exportVolume(name) {
  const r = await ask({
    title: `Export ${name}`,
    fields: [
      { name: 'protocol', label: 'Protocol', options: ['nbd', 'iscsi'], value: 'nbd' },
      { name: 'initiators', label: 'iSCSI initiators allowed (comma-separated IQNs; empty: any)', value: '' },
      { name: 'chapUser', label: 'iSCSI CHAP user (optional)', value: '' },
      { name: 'chapSecret', label: 'iSCSI CHAP secret (at least 12 characters)', value: '' },
      { name: 'readOnly', label: 'Read-only', type: 'checkbox', value: false },
    ],
    confirm: 'Export',
  });
  if (!r) return;
  const body = { target: name, protocol: r.protocol, readOnly: r.readOnly };
  if (r.protocol === 'iscsi') {
    const list = r.initiators.split(',').map(s => s.trim()).filter(Boolean);
    if (list.length) body.allowedInitiators = list;
    if (r.chapUser) { body.chapUser = r.chapUser; body.chapSecret = r.chapSecret; }
  }
  await act(`${name} exported over ${r.protocol}.`, () => api('POST', '/api/v1/exports', body));
}

async function removeExport(name) {
  const r = await ask({ title: `Remove export ${name}?`, text: 'Clients connected through it lose access.', confirm: 'Remove', danger: true });
  if (r) await act(`Export ${name} removed.`, () => api('DELETE', `/api/v1/exports/${enc(name)}`));
}

async function deleteVolume(name) {
  const r = await ask({ title: `Delete volume ${name}?`, text: 'This deletes the volume and all of its snapshots. It cannot be undone.', confirm: 'Delete', danger: true, mustType: name });
  if (r) await act(`Volume ${name} deleted.`, () => api('DELETE', `/api/v1/volumes/${enc(name)}`));
}

// ---------- snapshots (timeline per volume) ----------

async function snapshots(volume) {
  const ioPath = `/api/v1/console/volumes/${enc(volume)}/io`;
  const [vol, snaps, io] = await Promise.all([api('GET', `/api/v1/volumes/${enc(volume)}`), api('GET', `/api/v1/volumes/${enc(volume)}/snapshots`), api('GET', ioPath)]);
  const base = `/api/v1/volumes/${enc(volume)}/snapshots`;
  const ioChart = h('div', { class: 'chart', id: 'io-chart', role: 'img' });
  const children = [
    h('p', {}, h('a', { href: '#/volumes' }, '← Volumes')),
    h('h1', {}, `Snapshots of ${volume}`),
    h('p', { class: 'muted' }, `${bytes(vol.sizeBytes)}, ${bytes(vol.allocatedBytes)} used, ${snaps.length} snapshots, exports: ${vol.exports.join(', ') || 'none'}`),
    h('h2', {}, 'I/O, last 30 minutes'), ioChart,
  ];
  if (can('snapshot.create')) {
    const name = h('input', { name: 'snapshot', placeholder: 'automatic' });
    children.push(h('form', {
      'aria-label': 'Take a snapshot',
      onsubmit: e => {
        e.preventDefault();
        act('Snapshot taken.', () => api('POST', base, { name: name.value || null }));
      },
    }, h('fieldset', {}, h('legend', {}, 'Take a snapshot'), h('label', {}, 'Name (optional)', name), h('button', { type: 'submit', class: 'primary' }, 'Take snapshot'))));
  }
  const ordered = [...snaps].sort((a, b) => new Date(b.createdAt) - new Date(a.createdAt));
  const shown = ordered.slice(0, 500);
  children.push(h('h2', {}, 'Timeline (newest first)'), ordered.length === 0 ? h('p', { class: 'warn' }, 'No snapshots yet.') : h('ol', { class: 'timeline', 'aria-label': `Snapshots of ${volume}` }, shown.map(s => {
    const usage = h('span', { class: 'muted' });
    return h('li', {},
      h('strong', {}, s.name), ' ', h('span', { class: 'muted' }, `${when(s.createdAt)} (${ago(s.createdAt)})`),
      s.held ? h('span', { class: 'badge' }, s.heldUntilReleased ? 'held' : `held until ${when(s.holdUntil)}`) : null,
      s.groupSnapshot ? h('span', { class: 'badge' }, `group ${s.groupSnapshot}`) : null,
      s.holdReason ? h('span', { class: 'muted' }, ` — ${s.holdReason}`) : null,
      h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: async () => {
          try {
            const u = await api('GET', `${base}/${enc(s.name)}/usage`);
            usage.textContent = `unique ${bytes(u.uniqueBytes)}, shared ${bytes(u.sharedBytes)}`;
          } catch (err) { fail(err); }
        } }, 'Space'),
        usage,
        can('view.create') ? h('button', { type: 'button', onclick: () => openView(s) }, 'Open a view') : null,
        // The stream carries the volume's data, so it needs operator (ApiRoles); the browser saves it as a file.
        can('snapshot.stream') ? h('a', { href: `${base}/${enc(s.name)}/stream`, download: `${s.address}.tmstream`, class: 'button' }, 'Export stream') : null,
        can('snapshot.hold') && !s.heldUntilReleased ? h('button', { type: 'button', onclick: () => hold(s) }, 'Hold') : null,
        can('snapshot.release') && s.held ? h('button', { type: 'button', onclick: () => act(`${s.address} released.`, () => api('POST', `${base}/${enc(s.name)}/release`)) }, 'Release') : null,
        can('volume.rollback') ? h('button', { type: 'button', class: 'danger', onclick: () => rollback(volume, s) }, 'Roll back to this') : null,
        can('snapshot.delete') ? h('button', { type: 'button', class: 'danger', onclick: () => deleteSnapshot(s) }, 'Delete') : null));
  })), ordered.length > shown.length ? h('p', { class: 'muted' }, `The newest ${shown.length} of ${ordered.length}; \`tidemark snapshot list ${volume}\` lists all.`) : null);
  show(children);
  drawIo(ioChart, io);
  // The server samples every 5 s; redraw from its history while the page is open (not counted as use of the session).
  const timer = setInterval(async () => {
    try { drawIo(ioChart, await api('GET', ioPath, undefined, { background: true })); } catch { /* the next tick tries again */ }
  }, 10000);
  leavePage = () => clearInterval(timer);
}

// Reads and writes per second (left axis) and MiB/s (right axis) from GET /api/v1/console/volumes/NAME/io.
function drawIo(el, io) {
  const samples = io.samples;
  const moved = samples.filter(s => s.readsPerSecond || s.writesPerSecond);
  el.dataset.samples = String(samples.length);
  el.dataset.active = String(moved.length);
  if (samples.length < 2 || typeof uPlot === 'undefined') {
    el.replaceChildren(h('p', { class: 'muted' }, `No I/O history yet (a sample every ${io.intervalSeconds} s while the server runs; only exported volumes do I/O).`));
    return;
  }
  const mib = v => v / 1024 ** 2;
  const x = samples.map(s => new Date(s.time).getTime() / 1000);
  const peak = (f) => Math.max(...samples.map(f));
  el.setAttribute('aria-label', `I/O of the last ${samples.length} samples: peak ${peak(s => s.readsPerSecond).toFixed(0)} reads/s, ${peak(s => s.writesPerSecond).toFixed(0)} writes/s`);
  el.replaceChildren();
  new uPlot({
    width: Math.max(300, Math.min(1150, el.clientWidth || 800)), height: 220,
    scales: { x: { time: true }, ops: {}, mib: {} },
    series: [{},
      { label: 'Reads/s', stroke: '#0b5cad', width: 2, scale: 'ops' },
      { label: 'Writes/s', stroke: '#a4000f', width: 2, scale: 'ops' },
      { label: 'Read MiB/s', stroke: '#0b5cad', dash: [6, 4], scale: 'mib' },
      { label: 'Write MiB/s', stroke: '#a4000f', dash: [6, 4], scale: 'mib' }],
    axes: [{}, { scale: 'ops', label: 'operations/s' }, { scale: 'mib', label: 'MiB/s', side: 1, grid: { show: false } }],
  }, [x, samples.map(s => s.readsPerSecond), samples.map(s => s.writesPerSecond), samples.map(s => mib(s.readBytesPerSecond)), samples.map(s => mib(s.writeBytesPerSecond))], el);
  el.append(h('p', { class: 'muted' }, moved.length
    ? `Peaks: ${peak(s => s.readsPerSecond).toFixed(0)} reads/s, ${peak(s => s.writesPerSecond).toFixed(0)} writes/s, ${bytes(peak(s => s.readBytesPerSecond))}/s read, ${bytes(peak(s => s.writeBytesPerSecond))}/s written.`
    : 'No I/O in this window.'));
}

async function openView(s) {
  const r = await ask({ title: `Open a view of ${s.address}`, text: 'A view is a writable copy of the snapshot; the snapshot itself never changes.', fields: [
    { name: 'name', label: 'View name', value: `${s.volume}-${s.name}-view`.slice(0, 64), required: true },
    { name: 'export', label: 'Export it over NBD', type: 'checkbox', value: true },
  ], confirm: 'Open view' });
  if (!r) return;
  await act(`View ${r.name} of ${s.address} opened${r.export ? ' and exported' : ''}.`, async () => {
    await api('POST', '/api/v1/views', { snapshot: s.address, name: r.name });
    if (r.export) await api('POST', '/api/v1/exports', { target: r.name, protocol: 'nbd' });
  });
}

async function hold(s) {
  const r = await ask({ title: `Hold ${s.address}`, text: 'A held snapshot cannot be deleted, by anyone or any policy.', fields: [
    { name: 'until', label: 'Until (YYYY-MM-DD; empty: until released)', value: '' },
    { name: 'reason', label: 'Reason', value: '' },
  ], confirm: 'Hold' });
  if (!r) return;
  const body = { reason: r.reason || null };
  if (r.until) body.until = new Date(r.until).toISOString();
  await act(`${s.address} held.`, () => api('POST', `/api/v1/volumes/${enc(s.volume)}/snapshots/${enc(s.name)}/hold`, body));
}

async function rollback(volume, s, force = false) {
  const r = await ask({
    title: `Roll ${volume} back to ${s.name}?`,
    text: force
      ? 'Clients are attached. Forcing ends their NBD connections and iSCSI sessions first.'
      : 'The volume becomes what it was at this snapshot. The current state is kept as a pre-rollback snapshot, and newer snapshots stay.',
    confirm: force ? 'End sessions and roll back' : 'Roll back', danger: true,
  });
  if (!r) return;
  try {
    const result = await api('POST', `/api/v1/volumes/${enc(volume)}/rollback`, { snapshot: s.name, force });
    say(`${volume} rolled back to ${s.name}; the state before is kept as ${result.preRollbackSnapshot?.name ?? 'a snapshot'}.`);
    await route();
  } catch (err) {
    // The in-use guard: clients are attached. Say who, and offer the forced rollback.
    if (err instanceof ApiError && err.status === 409 && !force && err.code === 'busy') {
      fail(err);
      await rollback(volume, s, true);
    } else {
      fail(err);
    }
  }
}

async function deleteSnapshot(s) {
  const r = await ask({ title: `Delete ${s.address}?`, text: 'Its unique space is freed. It cannot be undone.', confirm: 'Delete', danger: true });
  if (r) await act(`${s.address} deleted.`, () => api('DELETE', `/api/v1/volumes/${enc(s.volume)}/snapshots/${enc(s.name)}`));
}

// ---------- events ----------

async function events() {
  const q = new URLSearchParams(location.hash.split('?')[1] || '');
  const kind = h('input', { name: 'kind', value: q.get('kind') ?? '', placeholder: 'e.g. volume.create' });
  const subject = h('input', { name: 'subject', value: q.get('subject') ?? '' });
  const log = h('select', { name: 'log' }, ['main', 'refused'].map(l => h('option', { value: l, selected: q.get('log') === l }, l)));
  const limit = h('select', { name: 'limit' }, ['50', '200', '1000'].map(l => h('option', { value: l, selected: (q.get('limit') ?? '200') === l }, l)));
  const params = new URLSearchParams({ limit: limit.value, log: log.value });
  if (kind.value) params.set('kind', kind.value);
  if (subject.value) params.set('subject', subject.value);
  const list = await api('GET', `/api/v1/events?${params}`);
  main.replaceChildren(
    h('h1', {}, 'Events'),
    h('form', {
      'aria-label': 'Filter events',
      onsubmit: e => {
        e.preventDefault();
        const p = new URLSearchParams();
        for (const [k, el] of [['kind', kind], ['subject', subject], ['log', log], ['limit', limit]]) if (el.value) p.set(k, el.value);
        location.hash = `#/events?${p}`;
      },
    }, h('fieldset', {}, h('legend', {}, 'Filter'), h('label', {}, 'Kind', kind), h('label', {}, 'Subject', subject), h('label', {}, 'Log', log), h('label', {}, 'Newest', limit),
      h('button', { type: 'submit', class: 'primary' }, 'Apply'))),
    eventTable([...list].reverse()));
}

// ---------- jobs (live while the page is open) ----------

// Drawn from GET /api/v1/jobs, then from every "jobs" event of the live stream (progress moves once a
// second); without the stream (refused, or the browser lost it) the page polls every 2 s instead.
async function jobs() {
  const q = new URLSearchParams(location.hash.split('?')[1] || '');
  const focus = q.get('job');
  const table = h('div', {});
  const note = h('p', { class: 'muted' });
  main.replaceChildren(h('h1', {}, 'Jobs'), note, table);
  const draw = list => {
    table.replaceChildren(list.length === 0 ? h('p', { class: 'muted' }, 'No jobs.') : h('table', {},
      h('thead', {}, h('tr', {}, ['Job', 'Kind', 'Subject', 'State', 'Progress', 'By', 'Started', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, list.map(j => h('tr', { class: j.id === focus ? 'focus' : null, 'data-job': j.id },
        h('td', {}, j.id), h('td', {}, j.kind), h('td', {}, j.subject ?? ''),
        h('td', { class: j.state === 'failed' ? 'bad' : j.state === 'succeeded' ? 'ok' : j.state === 'cancelled' ? 'warn' : '', 'data-state': j.state }, j.state, j.error ? `: ${j.error}` : ''),
        h('td', {}, j.percent !== null && j.percent !== undefined ? [h('progress', { max: 100, value: j.percent, 'aria-label': `${j.id} progress` }), ` ${j.percent.toFixed(0)}%`] : `${j.done} ${j.unit}`,
          j.etaSeconds ? h('span', { class: 'muted' }, ` ETA ${duration(j.etaSeconds)}`) : null),
        h('td', {}, j.actor), h('td', {}, when(j.startedAt)),
        h('td', {}, j.state === 'running' && j.cancellable && can('job.cancel')
          ? h('button', { type: 'button', class: 'danger', 'aria-label': `Cancel job ${j.id}`, onclick: () => cancelJob(j) }, 'Cancel')
          : null))))));
  };
  let timer = null;
  let stopped = false;
  const poll = async () => {
    try {
      draw([...await api('GET', '/api/v1/jobs', undefined, { background: true })].reverse());
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      fail(err);
    }
    if (!stopped && !subscribed()) timer = setTimeout(poll, 2000);
  };
  let live = false;
  const subscribed = () => live;
  const unsubscribe = subscribe('jobs', list => { live = true; note.textContent = 'Live: progress updates every second.'; draw(list); });
  note.textContent = live ? 'Live: progress updates every second.' : 'Updated every 2 seconds.';
  leavePage = () => { stopped = true; unsubscribe(); clearTimeout(timer); };
  if (!live) await poll();
}

// ---------- policies ----------

function retentionOf(d) {
  const rules = [['keepLast', 'last'], ['keepHourly', 'hourly'], ['keepDaily', 'daily'], ['keepWeekly', 'weekly'], ['keepMonthly', 'monthly']]
    .filter(([k]) => d[k]).map(([k, text]) => `${d[k]} ${text}`);
  return rules.length ? rules.join(', ') : 'keep everything';
}

// Every policy with what it did last; edit goes through the policy wizard (the same preview), run
// and delete through the API. Deleting a policy keeps the snapshots it made (they stop being
// pruned), and the confirmation says so.
async function policies() {
  const list = await api('GET', '/api/v1/policies');
  const rows = list.map(p => {
    const d = p.definition;
    const target = d.volume ? h('a', { href: `#/volumes/${enc(d.volume)}` }, d.volume) : `group ${d.group}`;
    return h('tr', { 'data-policy': d.name },
      h('th', { scope: 'row' }, d.name), h('td', {}, target),
      h('td', {}, [d.schedule, d.changedBytes ? `after ${bytes(d.changedBytes)} changed` : null].filter(Boolean).join(', ') || '—'),
      h('td', {}, retentionOf(d)),
      h('td', {}, d.hosts?.length ? d.hosts.join(', ') : h('span', { class: 'muted' }, 'crash-consistent')),
      h('td', { class: d.enabled ? '' : 'muted' }, d.enabled ? (p.nextRun ? when(p.nextRun) : '—') : 'disabled'),
      h('td', {}, ago(p.lastSnapshotAt), ` (${p.snapshots.length} kept)`),
      h('td', { class: p.lastError ? 'bad' : 'ok' }, p.lastError ?? 'ok'),
      h('td', { class: 'actions' },
        can('policy.update') ? h('a', { href: `#/wizard/policy?name=${enc(d.name)}`, 'aria-label': `Edit policy ${d.name}` }, 'Edit') : null,
        can('policy.run') ? h('button', { type: 'button', 'aria-label': `Run policy ${d.name} now`, onclick: () => act(`Policy ${d.name} ran.`, () => api('POST', `/api/v1/policies/${enc(d.name)}/run`)) }, 'Run now') : null,
        can('policy.delete') ? h('button', { type: 'button', class: 'danger', 'aria-label': `Delete policy ${d.name}`, onclick: () => deletePolicy(d.name, p.snapshots.length) }, 'Delete') : null));
  });
  show(h('h1', {}, 'Policies'),
    can('policy.create') ? h('p', {}, h('a', { href: '#/wizard/policy' }, 'New protection policy')) : null,
    list.length === 0 ? h('p', { class: 'muted' }, 'No policies: snapshots are taken only by hand.') : h('table', {},
      h('thead', {}, h('tr', {}, ['Policy', 'Volume or group', 'When', 'Retention', 'Agents', 'Next run', 'Last snapshot', 'Last result', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)));
}

async function deletePolicy(name, owned) {
  const r = await ask({
    title: `Delete policy ${name}?`,
    text: `It stops taking snapshots. The ${owned} snapshot(s) it made are kept and are no longer pruned by it; delete them from the volume's timeline if they are not needed.`,
    confirm: 'Delete policy', danger: true, mustType: name,
  });
  if (r) await act(`Policy ${name} deleted.`, () => api('DELETE', `/api/v1/policies/${enc(name)}`));
}

// ---------- wizard: new protected volume ----------

function wizard() {
  const v = { name: '', size: '10G', block: '512', protocol: 'nbd', readOnly: false, schedule: 'every 1h', keepLast: '24', changed: '' };
  const steps = ['Volume', 'Export', 'Protection', 'Review'];
  let step = 0;
  const render = () => {
    const field = (label, key, attrs = {}) => h('label', {}, label, h('input', { name: key, value: v[key], oninput: e => { v[key] = e.target.value; }, ...attrs }));
    const select = (label, key, options) => h('label', {}, label, h('select', { name: key, onchange: e => { v[key] = e.target.value; } }, options.map(([val, text]) => h('option', { value: val, selected: v[key] === val }, text))));
    const pagesOf = [
      () => h('fieldset', {}, h('legend', {}, 'The volume'), field('Name', 'name', { required: true }), field('Size (e.g. 10G)', 'size', { required: true }), select('Block size', 'block', [['512', '512 bytes'], ['4096', '4096 bytes']])),
      () => h('fieldset', {}, h('legend', {}, 'How hosts reach it'), select('Export', 'protocol', [['nbd', 'NBD'], ['iscsi', 'iSCSI'], ['none', 'Not now']])),
      () => h('fieldset', {}, h('legend', {}, 'Snapshot policy'),
        select('Schedule', 'schedule', [['every 15m', 'Every 15 minutes'], ['every 1h', 'Every hour'], ['daily 02:30', 'Daily at 02:30'], ['none', 'No schedule']]),
        field('Keep the last', 'keepLast', { type: 'number', min: 1, max: 10000 }),
        field('Also snapshot after this much changed data (e.g. 512M; optional)', 'changed')),
      () => h('div', {}, h('h2', {}, 'Review'), h('dl', {},
        h('dt', {}, 'Volume'), h('dd', {}, `${v.name}, ${v.size}, ${v.block}-byte blocks`),
        h('dt', {}, 'Export'), h('dd', {}, v.protocol === 'none' ? 'none' : v.protocol),
        h('dt', {}, 'Policy'), h('dd', {}, v.schedule === 'none' && !v.changed ? 'none' : `${v.name}-protect: ${v.schedule === 'none' ? '' : v.schedule}${v.changed ? `, after ${v.changed} changed` : ''}, keep the last ${v.keepLast}`))),
    ];
    const check = () => {
      if (step === 0 && !/^[A-Za-z0-9._-]{1,64}$/.test(v.name)) return 'Name: 1-64 letters, digits, dots, dashes or underscores.';
      if (step === 0 && !parseSize(v.size)) return 'Size must be a number with an optional unit, e.g. 10G.';
      if (step === 2 && !(+v.keepLast >= 1)) return 'Keep at least one snapshot.';
      if (step === 2 && v.changed && !parseSize(v.changed)) return 'Changed data must be a size, e.g. 512M.';
      return null;
    };
    main.replaceChildren(
      h('h1', {}, 'New protected volume'),
      h('ol', { class: 'steps', 'aria-label': 'Steps' }, steps.map((s, i) => h('li', { 'aria-current': i === step ? 'step' : null }, `${i + 1}. ${s}`))),
      h('form', {
        onsubmit: e => {
          e.preventDefault();
          const problem = check();
          if (problem) { say(problem, 'error'); return; }
          status.replaceChildren();
          if (step < steps.length - 1) { step++; render(); } else create();
        },
      }, pagesOf[step](), h('p', { class: 'actions' },
        step > 0 ? h('button', { type: 'button', onclick: () => { step--; render(); } }, 'Back') : null,
        h('button', { type: 'submit', class: 'primary' }, step < steps.length - 1 ? 'Next' : 'Create'))));
    main.querySelector('input, select')?.focus();
  };
  // Each step is its own API call, in order; a failure says what was already made, so nothing is left unexplained.
  const create = async () => {
    const done = [];
    const log = h('ul', { 'aria-label': 'Progress' });
    main.replaceChildren(h('h1', {}, 'New protected volume'), log);
    const run = async (text, fn) => {
      const item = h('li', {}, `${text}…`);
      log.append(item);
      await fn();
      item.textContent = `✓ ${text}`;
      item.className = 'ok';
      done.push(text);
    };
    try {
      await run(`Create volume ${v.name}`, () => api('POST', '/api/v1/volumes', { name: v.name, sizeBytes: parseSize(v.size), logicalBlockSizeBytes: +v.block }));
      if (v.protocol !== 'none') await run(`Export it over ${v.protocol}`, () => api('POST', '/api/v1/exports', { target: v.name, protocol: v.protocol }));
      if (v.schedule !== 'none' || v.changed) {
        await run(`Protect it with policy ${v.name}-protect`, () => api('POST', '/api/v1/policies', {
          name: `${v.name}-protect`, volume: v.name, schedule: v.schedule === 'none' ? null : v.schedule,
          changedBytes: v.changed ? parseSize(v.changed) : null, keepLast: +v.keepLast,
        }));
      }
      say(`Volume ${v.name} is ready.`);
      log.after(h('p', {}, h('a', { href: `#/volumes/${enc(v.name)}` }, `Open ${v.name}`)));
    } catch (err) {
      fail(err);
      log.append(h('li', { class: 'bad' }, `✗ stopped: ${err.message}`));
      log.after(h('p', {}, done.length ? `Already done: ${done.join('; ')}. Finish on the Volumes page, or delete the volume and start again.` : 'Nothing was created.'));
    }
  };
  render();
}

// ---------- boot ----------

state.sessionEnded = showSignIn;
state.rerender = route;
window.addEventListener('hashchange', () => { status.replaceChildren(); route(); });
(async () => {
  try {
    state.session = await api('GET', '/console/session');
    await start();
  } catch {
    showSignIn();
  }
  // When the first page has rendered, in ms since navigation start (bench/console reads it).
  document.body.dataset.readyMs = String(Math.round(performance.now()));
})();
