// Replication wizards of the Tidemark web console (ADR 0016): set-up (pair a partner, choose
// volumes, seed, first sync with progress) and disaster (promote at the DR site, then fail back).
// Each step is the API call the CLI makes, so its guards (admin-only pairing and promotion, the
// split-brain refusal of a reverse) apply here unchanged; the page adds typed confirmations.
import { main, status, h, api, ApiError, say, fail, can, when, ago, bytes, duration, enc, ask, show } from './ui.js';
import { subscribe, follow } from './live.js';
import { stepper } from './wizards.js';

const nameOk = text => /^[A-Za-z0-9._-]{1,64}$/.test(text);

// ---------- set-up ----------

export async function replicationWizard() {
  if (!can('replica.create')) { main.replaceChildren(h('h1', {}, 'Replication set-up'), h('p', {}, 'Your role may not set up replication.')); return; }
  const [partners, volumes, replicas, identity] = await Promise.all([
    api('GET', '/api/v1/partners'), api('GET', '/api/v1/volumes'), api('GET', '/api/v1/replicas'), api('GET', '/api/v1/identity')]);
  const replicated = new Set(replicas.map(r => r.volume));
  const candidates = volumes.filter(x => x.kind === 'volume' && !replicated.has(x.name));
  const v = { partner: partners[0]?.name ?? '', newName: '', address: '', fingerprint: '', volumes: new Set(), every: '', standby: 'none', seed: 'stream' };
  const pairNew = () => v.partner === '' || !partners.some(p => p.name === v.partner);
  stepper('Replication set-up', v, [
    {
      title: 'Partner',
      render: () => {
        const options = [...partners.map(p => [p.name, `${p.name} (${p.address})`]), ['', 'Pair a new partner…']];
        const fresh = h('fieldset', { hidden: !pairNew() }, h('legend', {}, 'Pair a new partner (admin)'),
          h('p', { class: 'muted' }, 'On the partner, pair this server too: ', h('code', {}, `tidemark partner add NAME ${identity.replicationAddress ?? 'ADDRESS'} ${identity.fingerprint}`)),
          field(v, 'Partner name', 'newName'), field(v, 'Its replication address (HOST:PORT)', 'address'), field(v, 'Its certificate fingerprint (tidemark partner identity there)', 'fingerprint', { size: 70 }));
        return h('div', {},
          h('fieldset', {}, h('legend', {}, 'Where the copies go'),
            h('label', {}, 'Partner', h('select', { name: 'partner', onchange: e => { v.partner = e.target.value; fresh.hidden = !pairNew(); } },
              options.map(([value, text]) => h('option', { value, selected: v.partner === value }, text))))),
          fresh);
      },
      check: () => !pairNew() ? null
        : !can('partner.add') ? 'Pairing a new partner needs an admin; choose a paired one.'
          : !nameOk(v.newName) || !v.address || !v.fingerprint ? 'Give the new partner a name, its replication address and its fingerprint.' : null,
    },
    {
      title: 'Volumes',
      // Pairing happens when leaving the first step, and the link is tested, so a typo shows here and not after the first sync.
      enter: async () => {
        if (pairNew()) {
          await api('POST', '/api/v1/partners', { name: v.newName, address: v.address.trim(), fingerprint: v.fingerprint.trim() });
          partners.push({ name: v.newName, address: v.address });
          v.partner = v.newName;
        }
        await api('POST', `/api/v1/partners/${enc(v.partner)}/test`);
      },
      render: () => h('div', {},
        h('fieldset', {}, h('legend', {}, `Volumes to replicate to ${v.partner}`),
          candidates.length === 0 ? h('p', { class: 'warn' }, 'Every volume is already replicated (or there is none).') : null,
          candidates.map(x => h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'volume', value: x.name, checked: v.volumes.has(x.name),
            onchange: e => { if (e.target.checked) v.volumes.add(x.name); else v.volumes.delete(x.name); } }), `${x.name} (${bytes(x.sizeBytes)})`))),
        h('fieldset', {}, h('legend', {}, 'Schedule and standby'),
          field(v, 'Sync every (e.g. 15m; empty: only when asked)', 'every'),
          h('label', {}, 'Export prepared at the partner for a disaster', h('select', { name: 'standby', onchange: e => { v.standby = e.target.value; } },
            [['none', 'None'], ['nbd', 'NBD'], ['iscsi', 'iSCSI']].map(([value, text]) => h('option', { value, selected: v.standby === value }, text)))))),
      check: () => (v.volumes.size === 0 ? 'Choose at least one volume.' : null),
    },
    {
      title: 'Seed',
      render: () => h('fieldset', {}, h('legend', {}, 'How the first copy gets there'),
        radio(v, 'seed', 'stream', 'Send everything over the link (the first sync streams the whole volume)'),
        radio(v, 'seed', 'scan', 'A copy is already there (an imported stream, a restored backup): a hash scan sends only what differs. The partner must have accepted the volume first (tidemark replica accept there).')),
    },
    {
      title: 'Review',
      render: () => h('dl', {},
        h('dt', {}, 'Partner'), h('dd', {}, v.partner),
        h('dt', {}, 'Volumes'), h('dd', {}, [...v.volumes].join(', ')),
        h('dt', {}, 'Schedule'), h('dd', {}, v.every ? `every ${v.every}` : 'only when asked'),
        h('dt', {}, 'Standby export'), h('dd', {}, v.standby),
        h('dt', {}, 'Seed'), h('dd', {}, v.seed === 'scan' ? 'hash scan against the copy there' : 'full stream')),
    },
  ], () => setUp(v), 'Start replication');
}

function field(v, label, key, attrs = {}) {
  return h('label', {}, label, h('input', { name: key, value: v[key] ?? '', oninput: e => { v[key] = e.target.value; }, ...attrs }));
}

function radio(v, key, value, label) {
  return h('p', {}, h('label', { class: 'inline' }, h('input', { type: 'radio', name: key, value, checked: v[key] === value, onchange: () => { v[key] = value; } }), label));
}

// Creates each replica, then starts its first sync as a job and follows its progress from the live stream.
async function setUp(v) {
  const log = h('ul', { 'aria-label': 'Progress' });
  main.replaceChildren(h('h1', {}, 'Replication set-up'), log);
  const made = [];
  for (const volume of v.volumes) {
    const item = h('li', {}, `Replicate ${volume} to ${v.partner}…`);
    log.append(item);
    try {
      await api('POST', '/api/v1/replicas', {
        volume, partner: v.partner, every: v.every.trim() || null, seed: v.seed === 'scan',
        standbyExports: v.standby === 'none' ? null : [{ protocol: v.standby }],
      });
      made.push(volume);
      item.textContent = `✓ ${volume} replicates to ${v.partner}; first sync…`;
      const started = await api('POST', `/api/v1/replicas/${enc(volume)}/sync?wait=0`);
      const bar = h('progress', { max: 100, 'aria-label': `${volume} first sync` });
      const text = h('span', { class: 'muted' });
      item.append(' ', bar, ' ', text);
      const job = started?.id && started?.state ? started : null;
      const result = job ? await follow(job.id, bar, text) : { state: 'succeeded' };
      if (result.state === 'succeeded') {
        bar.value = 100;
        item.className = 'ok';
        text.textContent = `first sync done${result.done ? `: ${bytes(result.done)}` : ''}`;
      } else {
        item.className = 'bad';
        text.textContent = `first sync ${result.state}: ${result.error ?? ''} (it is retried by 'Sync' on the volume's replica, or by its schedule)`;
      }
    } catch (err) {
      fail(err);
      item.className = 'bad';
      item.textContent = `✗ ${volume}: ${err.message}`;
    }
  }
  say(made.length ? `Replication to ${v.partner} set up for ${made.join(', ')}.` : 'Nothing was set up.', made.length ? 'info' : 'error');
}

// ---------- the replication page: partners and the replicas this server sends ----------

// The primary's side: every partner with a link test, and every replica with its state, how far
// behind it is against its interval, and a sync that follows its job. The DR side (promote, fail
// back) is the disaster page, linked here.
export async function replicationPage() {
  const [partners, replicas, lagHistory] = await Promise.all([api('GET', '/api/v1/partners'), api('GET', '/api/v1/replicas'), api('GET', '/api/v1/console/replication-lag')]);
  const lagChart = h('div', { class: 'chart', id: 'lag-chart', role: 'img' });
  const lag = r => {
    if (r.lagSeconds === null || r.lagSeconds === undefined) return 'not synced yet';
    return `${duration(r.lagSeconds)}${r.every ? ` (every ${r.every})` : ''}`;
  };
  const partnerRows = partners.map(p => {
    const result = h('span', { class: 'muted' });
    return h('tr', { 'data-partner': p.name },
      h('th', { scope: 'row' }, p.name), h('td', {}, p.address), h('td', {}, h('code', {}, `${p.fingerprint.slice(0, 23)}…`)), h('td', {}, when(p.addedAt)),
      h('td', { class: 'actions' },
        h('button', { type: 'button', 'aria-label': `Test link to ${p.name}`, onclick: async () => {
          result.textContent = 'testing…';
          try {
            const hello = await api('POST', `/api/v1/partners/${enc(p.name)}/test`);
            result.className = 'ok';
            result.textContent = `answered: Tidemark ${hello.version}`;
          } catch (err) {
            result.className = 'bad';
            result.textContent = err.message;
          }
        } }, 'Test link'),
        result));
  });
  const replicaRows = replicas.map(r => h('tr', { 'data-replica': r.volume },
    h('th', { scope: 'row' }, h('a', { href: `#/volumes/${enc(r.volume)}` }, r.volume), r.groupMembers?.length ? h('span', { class: 'badge' }, `group: ${r.groupMembers.join(', ')}`) : null),
    h('td', {}, `${r.partner}: ${r.remoteVolume}`),
    h('td', { class: r.state === 'active' ? '' : 'warn' }, r.state, r.suspendedReason ? `: ${r.suspendedReason}` : ''),
    h('td', {}, r.lastSnapshot ?? '—'),
    h('td', {}, lag(r)),
    h('td', {}, r.lastSyncAt ? `${bytes(r.lastBytesSent)} in ${duration(r.lastDurationSeconds)}` : '—'),
    h('td', {}, r.nextSyncAt ? when(r.nextSyncAt) : '—'),
    h('td', { class: r.lastError ? 'bad' : '' }, r.lastError ?? (r.retries ? `${r.retries} retries` : 'ok')),
    h('td', { class: 'actions' }, can('replica.sync') && r.state === 'active' ? h('button', { type: 'button', 'aria-label': `Sync ${r.volume} now`, onclick: () => syncNow(r) }, 'Sync now') : null)));
  show(h('h1', {}, 'Replication'),
    h('p', {}, can('replica.create') ? [h('a', { href: '#/wizard/replication' }, 'Set up replication'), ' · '] : null, h('a', { href: '#/disaster' }, 'Replicas at this site: promote or fail back')),
    h('h2', {}, 'Partners'),
    partners.length === 0 ? h('p', { class: 'muted' }, 'No partner is paired with this server.') : h('table', { 'aria-label': 'Partners' },
      h('thead', {}, h('tr', {}, ['Partner', 'Replication address', 'Fingerprint', 'Paired', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, partnerRows)),
    h('h2', {}, 'Volumes replicated from here'),
    replicas.length === 0 ? h('p', { class: 'muted' }, 'No volume is replicated from this server.') : h('table', { 'aria-label': 'Replicas sent from here' },
      h('thead', {}, h('tr', {}, ['Volume', 'To', 'State', 'Newest sent', 'Behind by', 'Last transfer', 'Next sync', 'Last result', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, replicaRows)),
    h('h2', {}, 'Replication lag, last hour'), lagChart);
  drawLag(lagChart, lagHistory);
}

// One line per replica (the 8 furthest behind now, so a thousand replicas stay readable), from
// GET /api/v1/console/replication-lag (a sample every 10 s, in the server's memory).
function drawLag(el, history) {
  const series = [...history.replicas].sort((a, b) => b.lagSeconds[b.lagSeconds.length - 1] - a.lagSeconds[a.lagSeconds.length - 1]).slice(0, 8);
  el.dataset.samples = String(history.times.length);
  el.dataset.replicas = series.map(r => r.volume).join(',');
  if (history.times.length < 2 || series.length === 0 || typeof uPlot === 'undefined') {
    el.replaceChildren(h('p', { class: 'muted' }, `No lag history yet (a sample every ${history.intervalSeconds} s of each replica that has synced).`));
    return;
  }
  const colours = ['#0b5cad', '#a4000f', '#116b2e', '#7a4d00', '#5b2a86', '#00657a', '#8a3b00', '#333'];
  el.setAttribute('aria-label', `Replication lag over ${history.times.length} samples: ${series.map(r => `${r.volume} now ${duration(r.lagSeconds[r.lagSeconds.length - 1])}`).join('; ')}`);
  el.replaceChildren();
  new uPlot({
    width: Math.max(300, Math.min(1150, el.clientWidth || 800)), height: 220,
    scales: { x: { time: true } },
    series: [{}, ...series.map((r, i) => ({ label: `${r.volume} (s)`, stroke: colours[i], width: 2 }))],
    axes: [{}, { label: 'seconds behind' }],
  }, [history.times.map(t => new Date(t).getTime() / 1000), ...series.map(r => r.lagSeconds)], el);
  if (history.replicas.length > series.length) el.append(h('p', { class: 'muted' }, `The ${series.length} furthest behind of ${history.replicas.length} replicas.`));
}

async function syncNow(r) {
  try {
    const started = await api('POST', `/api/v1/replicas/${enc(r.volume)}/sync?wait=0`);
    const bar = h('progress', { max: 100, 'aria-label': `${r.volume} sync` });
    const text = h('span', { class: 'muted' });
    status.replaceChildren(h('div', { class: 'info' }, `Syncing ${r.volume}… `, bar, ' ', text));
    const job = started?.id && started?.state ? await follow(started.id, bar, text) : { state: 'succeeded' };
    if (job.state === 'cancelled') { say(`Sync of ${r.volume} cancelled after ${bytes(job.done)}; the next sync resumes where it stopped.`, 'error'); return; }
    if (job.state !== 'succeeded') { say(`Sync of ${r.volume} ${job.state}: ${job.error ?? ''}`, 'error'); return; }
    say(`${r.volume} synced to ${r.partner}.`);
    await replicationPage();
  } catch (err) {
    fail(err);
  }
}

// ---------- disaster: promote at the DR site, then fail back ----------

export async function disasterWizard() {
  const incoming = await api('GET', '/api/v1/incoming');
  const rows = incoming.map(r => h('tr', { 'data-volume': r.volume },
    h('td', {}, r.volume, r.group ? h('span', { class: 'badge' }, `group ${r.group}`) : null),
    h('td', {}, `${r.partner}: ${r.sourceVolume}`),
    h('td', {}, r.lastSnapshot ? `${r.lastSnapshot}, ${ago(r.lastSnapshotCreatedAt)}` : 'nothing complete yet'),
    h('td', {}, (r.standbyExports ?? []).map(x => `${x.protocol}${x.name ? ` ${x.name}` : ''}`).join(', ') || 'none'),
    h('td', { class: r.promoted ? 'warn' : '' }, r.promoted ? 'promoted (writable here)' : 'replica (read-only)'),
    h('td', { class: 'actions' },
      !r.promoted && can('replica.promote') && r.lastSnapshot ? h('button', { type: 'button', class: 'danger', onclick: () => promote(r) }, 'Promote') : null,
      r.promoted && can('replica.reverse') ? h('button', { type: 'button', class: 'danger', onclick: () => failBack(r) }, 'Fail back') : null)));
  show(
    h('h1', {}, 'Disaster recovery'),
    h('p', {}, 'At the DR site: promote a replica to bring its application up here with the exports prepared for it; once the home site is back, fail back: ',
      'only what changed here since the newest snapshot both sites share goes home, then promote it there.'),
    incoming.length === 0 ? h('p', { class: 'muted' }, 'No volume is replicated into this server.') : h('table', { 'aria-label': 'Replicas at this site' },
      h('thead', {}, h('tr', {}, ['Replica', 'From', 'Newest complete snapshot', 'Prepared exports', 'State', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)),
    can('replica.promote') ? null : h('p', { class: 'muted' }, 'Promoting and failing back need an admin.'));
}

async function promote(r) {
  const ok = await ask({
    title: `Promote ${r.volume} here?`,
    text: `It becomes a writable primary at ${r.lastSnapshot} (${when(r.lastSnapshotCreatedAt)}); writes at ${r.partner} after that are not in it. `
      + 'Its prepared exports come up. Its role generation rises, so the old primary cannot overwrite it later.',
    confirm: 'Promote', danger: true, mustType: r.volume,
  });
  if (!ok) return;
  try {
    const result = await api('POST', `/api/v1/incoming/${enc(r.volume)}/promote`);
    say(`${r.volume} is now a primary here, as of ${result.snapshot.address}.${result.note ? ` ${result.note}` : ''}`);
    await disasterWizard();
  } catch (err) {
    fail(err);
  }
}

async function failBack(r, discardAtHome = false) {
  const ok = await ask({
    title: `Fail ${r.volume} back to ${r.partner}?`,
    text: discardAtHome
      ? `${r.partner} also wrote to ${r.sourceVolume} after the common snapshot. Failing back reverts those writes there; they are kept in a pre-rollback snapshot at ${r.partner}.`
      : `Sends what changed here since the newest snapshot both sites share into ${r.sourceVolume} at ${r.partner}. Then promote it there to finish.`,
    confirm: discardAtHome ? 'Revert home\'s writes and fail back' : 'Fail back', danger: true, mustType: discardAtHome ? 'home' : r.volume,
  });
  if (!ok) return;
  try {
    const started = await api('POST', `/api/v1/incoming/${enc(r.volume)}/reverse?wait=0${discardAtHome ? '&discardWritesAt=home' : ''}`);
    const bar = h('progress', { max: 100, 'aria-label': `${r.volume} fail-back` });
    const text = h('span', { class: 'muted' });
    status.replaceChildren(h('div', { class: 'info' }, `Failing ${r.volume} back… `, bar, ' ', text));
    const job = started?.id && started?.state ? await follow(started.id, bar, text) : { state: 'succeeded' };
    if (job.state !== 'succeeded') {
      // The split-brain guard: home wrote too. Say so, and offer the explicit discard like the CLI's --discard-writes-at home.
      if (!discardAtHome && (job.errorCode === 'conflict' || /discard-writes-at/.test(job.error ?? ''))) { say(job.error, 'error'); await failBack(r, true); return; }
      say(`Fail-back of ${r.volume} ${job.state}: ${job.error ?? ''}`, 'error');
      return;
    }
    say(`${r.volume} was sent back to ${r.partner}. Promote ${r.sourceVolume} there to finish the fail-back.`);
    await disasterWizard();
  } catch (err) {
    if (err instanceof ApiError && !discardAtHome && /discard-writes-at/.test(err.message)) { fail(err); await failBack(r, true); return; }
    fail(err);
  }
}
