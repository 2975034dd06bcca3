// Mail recovery in the recovery wizard of the Tidemark web console (ADR 0016). Everything goes
// through POST /api/v1/recoveries/mail (ADR 0012), run by the server as a job on the agent of a
// paired recovery host: a dry run lists the matches, then the chosen messages, folder or mailbox go
// back over IMAP, by SMTP, or into an export on that host; the page shows what happened to each.
// The server makes and deletes the view of the snapshot for every run; credentials stay on the host.
import { main, status, h, api, say, can, when, bytes, enc } from './ui.js';
import { follow } from './live.js';

// One recovery run restores one message when the administrator ticked some of the matches (the API
// takes a search, not a list); past this many, restoring their folder or mailbox is the better tool.
const MaxPicked = 20;

const outcomeText = { restored: 'restored', 'skipped-duplicate': 'already there', failed: 'failed' };

// The hosts whose agent declares a mail store on `volume` ({ host, store }), and the hosts that did
// not answer (named on the page, so a stopped agent does not look like "no mail store").
export async function mailStoresOn(volume) {
  const hosts = await api('GET', '/api/v1/hosts');
  const answers = await Promise.allSettled(hosts.map(x => api('GET', `/api/v1/hosts/${enc(x.name)}/status`)));
  const stores = [];
  const unreachable = [];
  answers.forEach((a, i) => {
    if (a.status !== 'fulfilled') { unreachable.push(hosts[i].name); return; }
    for (const store of a.value.status.mailStores ?? []) if (store.volume === volume) stores.push({ host: hosts[i].name, store });
  });
  return { stores, unreachable };
}

export const mayRecoverMail = () => can('recovery.start');

export function newMailState() {
  const today = new Date();
  const pad = n => String(n).padStart(2, '0');
  return {
    where: '0', user: '', folder: '', messageId: '', subject: '', from: '', to: '', since: '', until: '', attachment: false,
    result: null, picked: new Set(), scope: 'selected',
    target: 'imap-recovered', address: '', tls: 'auto', into: `Recovered/${today.getFullYear()}-${pad(today.getMonth() + 1)}-${pad(today.getDate())}`,
    sendTo: '', sendFrom: '', exportName: '', exportFormat: 'eml',
  };
}

const field = (m, label, key, attrs = {}) => h('label', {}, label, h('input', { name: key, value: m[key] ?? '', oninput: e => { m[key] = e.target.value; }, ...attrs }));
const choice = (m, label, key, options, onchange) => h('label', {}, label, h('select', { name: key, onchange: e => { m[key] = e.target.value; onchange?.(); } },
  options.map(([value, text]) => h('option', { value, selected: m[key] === value }, text))));

// A date field means the whole day in the browser's time zone: "until" is the start of the next day.
function day(text, next) {
  if (!text) return null;
  const d = new Date(`${text}T00:00:00`);
  if (next) d.setDate(d.getDate() + 1);
  return d.toISOString();
}

function searchFilter(m) {
  return {
    users: m.user.trim() ? [m.user.trim()] : null, folder: m.folder.trim() || null, messageId: m.messageId.trim() || null,
    subject: m.subject.trim() || null, from: m.from.trim() || null, to: m.to.trim() || null,
    since: day(m.since, false), until: day(m.until, true), hasAttachment: m.attachment,
  };
}

function describeSearch(m) {
  const parts = [['user', m.user], ['folder', m.folder], ['Message-ID', m.messageId], ['subject', m.subject], ['from', m.from], ['to', m.to], ['since', m.since], ['until', m.until]]
    .filter(([, x]) => x.trim()).map(([k, x]) => `${k} "${x.trim()}"`);
  if (m.attachment) parts.push('with an attachment');
  return parts.length ? parts.join(', ') : 'any message';
}

const stepText = ['making a view of the snapshot', 'the recovery host reads the mail store', 'removing the view'];

// Starts one recovery job and follows it on the live stream (progress in `line`); resolves with its
// MailRecoveryResultDto, or throws with the job's own reason.
async function runRecovery(request, line) {
  const bar = h('progress', { max: 100, 'aria-label': 'Recovery progress' });
  const text = h('span', { class: 'muted' });
  line.append(' ', bar, ' ', text);
  try {
    const started = await api('POST', '/api/v1/recoveries/mail?wait=0', request);
    if (!(started?.id && started?.state)) return started; // it ended within the request
    const ended = await follow(started.id, bar, text, j => (j.state === 'running' ? stepText[Math.min(j.done, 2)] ?? '' : j.state));
    if (ended.state !== 'succeeded') throw new Error(`recovery job ${ended.id} ${ended.state}: ${ended.error ?? 'no reason given'}`);
    return (ended.result ? ended : await api('GET', `/api/v1/jobs/${enc(ended.id)}`)).result;
  } finally {
    bar.remove();
    text.remove();
  }
}

const request = (v, filter, target) => {
  const { host, store } = v.mailStores.stores[Number(v.mail.where)];
  return { host, snapshot: `${v.volume}@${v.snapshot}`, filter, target, mailRoot: store.mailRoot, format: store.format };
};

// The wizard's steps after the point in time: search, matches (the dry run), where they go.
export function mailSteps(v) {
  const m = v.mail;
  return [
    {
      title: 'Find mail',
      render: () => {
        const { stores } = v.mailStores;
        return h('fieldset', {}, h('legend', {}, `Search the mail in ${v.volume}@${v.snapshot} (every criterion given must match; a dry run: nothing is restored yet)`),
          stores.length > 1
            ? choice(m, 'Mail store (and the recovery host whose agent reads it)', 'where', stores.map((x, i) => [String(i), `${x.store.name} on ${x.host}`]))
            : h('p', { class: 'muted' }, `Mail store ${stores[0].store.name} (${stores[0].store.format}), read by the agent on ${stores[0].host}.`),
          field(m, 'Mailbox owner (user)', 'user', { autocomplete: 'off' }),
          field(m, 'Folder (levels separated by /, e.g. INBOX or Archive/2026)', 'folder'),
          field(m, 'Message-ID', 'messageId'),
          field(m, 'Subject contains', 'subject'),
          field(m, 'From contains', 'from'),
          field(m, 'To, Cc or Bcc contains', 'to'),
          field(m, 'Received on or after', 'since', { type: 'date' }),
          field(m, 'Received on or before', 'until', { type: 'date' }),
          h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'attachment', checked: m.attachment, onchange: e => { m.attachment = e.target.checked; } }), 'Only messages with an attachment (reads whole messages: slower)'));
      },
      check: () => (m.since && m.until && m.since > m.until ? 'The first day received is after the last one.' : null),
    },
    {
      title: 'Matches',
      enter: async () => {
        const line = h('div', { class: 'info' }, `Searching ${v.volume}@${v.snapshot} for ${describeSearch(m)}…`);
        status.replaceChildren(line);
        m.result = await runRecovery(request(v, searchFilter(m), { kind: 'list' }), line);
        status.replaceChildren();
        if (m.result.error) say(`The search stopped early: ${m.result.error}. The matches found before are listed.`, 'error');
        if (m.result.matches.length === 0) {
          say(`No message in ${m.result.snapshot} matches ${describeSearch(m)}. Widen the search (fewer criteria, a longer date range) or pick an older snapshot.`, 'error');
          throw Object.assign(new Error('no match'), { shown: true });
        }
        m.picked = new Set(m.result.matches.map((_, i) => i));
        m.scope = 'selected';
      },
      render: () => matchesOf(m),
      check: () => (m.scope !== 'selected' ? null
        : m.picked.size === 0 ? 'Tick at least one message, or choose a folder or a whole mailbox.'
          : m.picked.size < m.result.matches.length && m.picked.size > MaxPicked ? `Tick at most ${MaxPicked} messages one by one (or all of them), or restore their folder or mailbox.` : null),
    },
    {
      title: 'Restore to',
      render: () => targetOf(v),
      check: () => {
        if (m.target.startsWith('imap') || m.target === 'smtp') {
          if (!/^[^\s:/]+(:\d{1,5})?$/.test(m.address.trim())) return `Give the ${m.target === 'smtp' ? 'SMTP' : 'IMAP'} server as HOST:PORT, as the recovery host reaches it.`;
        }
        if (m.target === 'imap-recovered' && !m.into.trim()) return 'Give the folder to restore into.';
        if (m.target === 'smtp' && !m.sendTo.trim()) return 'Give the address to send to (or {user}@DOMAIN for each mailbox owner).';
        if (m.target === 'export' && !/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(m.exportName)) return 'Export name: one directory name (letters, digits, - _ .; not starting with a dot).';
        return null;
      },
    },
  ];
}

function matchesOf(m) {
  const r = m.result;
  const users = [...new Set(r.matches.map(x => x.user))];
  const folders = [...new Set(r.matches.map(x => `${x.user}/${x.folder}`))];
  const total = r.matches.reduce((n, x) => n + x.sizeBytes, 0);
  const tick = (i, on) => { if (on) m.picked.add(i); else m.picked.delete(i); };
  const boxes = [];
  return h('div', {},
    h('p', { id: 'mail-summary' }, `${r.matches.length} message(s), ${bytes(total)}, in ${folders.length} folder(s) of ${users.length} mailbox(es), in ${r.snapshot} (taken ${when(r.snapshotCreatedAt)}).`),
    choice(m, 'Restore', 'scope', [
      ['selected', 'The messages ticked below'],
      ...folders.map(f => [`folder:${f}`, `The whole folder ${f} (all of it, not only the matches)`]),
      ...users.map(u => [`mailbox:${u}`, `The whole mailbox of ${u}`]),
    ]),
    h('table', { 'aria-label': 'Matching messages' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, h('input', { type: 'checkbox', 'aria-label': 'Tick all', checked: m.picked.size === r.matches.length, onchange: e => { boxes.forEach((b, i) => { b.checked = e.target.checked; tick(i, b.checked); }); } })),
        ['Mailbox', 'Folder', 'Received', 'From', 'Subject', 'Size', 'Flags'].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, r.matches.map((x, i) => {
        const box = h('input', { type: 'checkbox', checked: m.picked.has(i), 'aria-label': `Tick ${x.subject || '(no subject)'} in ${x.user}/${x.folder}`, onchange: e => tick(i, e.target.checked) });
        boxes.push(box);
        return h('tr', {}, h('td', {}, box), h('td', {}, x.user), h('td', {}, x.folder), h('td', {}, when(x.internalDate)),
          h('td', {}, x.from), h('td', {}, x.subject || '(no subject)'), h('td', {}, bytes(x.sizeBytes)), h('td', {}, [...x.flags, ...x.keywords].join(' ')));
      }))));
}

function targetOf(v) {
  const m = v.mail;
  const { host } = v.mailStores.stores[Number(m.where)];
  const fields = h('div');
  const tls = () => choice(m, 'TLS', 'tls', [['auto', 'auto (TLS on 993/465, STARTTLS when offered)'], ['starttls', 'STARTTLS'], ['tls', 'TLS'], ['none', 'none']]);
  const draw = () => fields.replaceChildren(...{
    'imap-original': () => [field(m, 'IMAP server (HOST:PORT, as the recovery host reaches it)', 'address'), tls(),
      h('p', { class: 'muted' }, `The agent on ${host} logs in with the IMAP master user from its own directory (imap-master); no password passes through the console.`)],
    'imap-recovered': () => [field(m, 'IMAP server (HOST:PORT, as the recovery host reaches it)', 'address'), tls(), field(m, 'Into folder', 'into'),
      h('p', { class: 'muted' }, `The agent on ${host} logs in with the IMAP master user from its own directory (imap-master); no password passes through the console.`)],
    smtp: () => [field(m, 'SMTP server (HOST:PORT)', 'address'), tls(), field(m, 'Send to (an address, or {user}@DOMAIN for each mailbox owner)', 'sendTo'),
      field(m, 'Sender (empty: tidemark-recovery@localhost)', 'sendFrom'), h('p', { class: 'muted' }, `A login, if the server needs one, is the file smtp-login in the agent's directory on ${host}.`)],
    export: () => [field(m, `Directory name under recovered/ on ${host}`, 'exportName'), choice(m, 'Format', 'exportFormat', [['eml', '.eml files, one per message'], ['mbox', 'one mbox per folder (legal hold)']])],
  }[m.target]());
  draw();
  return h('fieldset', {}, h('legend', {}, 'Where the messages go'),
    choice(m, 'Put them', 'target', [
      ['imap-recovered', 'back into the mailbox, in a separate folder (IMAP)'],
      ['imap-original', 'back into their original folders (IMAP)'],
      ['smtp', 'by mail to the user or an address (SMTP)'],
      ['export', `into files on the recovery host ${host} (.eml or mbox)`],
    ], draw),
    fields);
}

function targetRequest(m) {
  const tls = m.tls === 'auto' ? null : m.tls;
  switch (m.target) {
    case 'imap-original': return { kind: 'imap', address: m.address.trim(), tls };
    case 'imap-recovered': return { kind: 'imap', address: m.address.trim(), tls, into: m.into.trim() };
    case 'smtp': return { kind: 'smtp', address: m.address.trim(), tls, sendTo: m.sendTo.trim(), sendFrom: m.sendFrom.trim() || null };
    default: return { kind: 'export', exportName: m.exportName, exportFormat: m.exportFormat };
  }
}

// What to run for the chosen scope: the search itself when every match is ticked (with the
// mailboxes named, which IMAP needs), else one run per ticked message, keyed by its mailbox, folder
// and Message-ID (or its received second and subject when it has none).
function runsOf(m) {
  const r = m.result;
  if (m.scope.startsWith('folder:')) {
    const [user, ...folder] = m.scope.slice(7).split('/');
    return [{ label: `folder ${user}/${folder.join('/')}`, filter: { users: [user], folder: folder.join('/') } }];
  }
  if (m.scope.startsWith('mailbox:')) return [{ label: `mailbox ${m.scope.slice(8)}`, filter: { users: [m.scope.slice(8)] } }];
  if (m.picked.size === r.matches.length) {
    return [{ label: `${r.matches.length} message(s) found`, filter: { ...searchFilter(m), users: [...new Set(r.matches.map(x => x.user))] } }];
  }
  return [...m.picked].sort((a, b) => a - b).map(i => {
    const x = r.matches[i];
    const at = new Date(x.internalDate);
    return {
      label: `${x.user}/${x.folder}: ${x.subject || '(no subject)'}`,
      filter: x.messageId
        ? { users: [x.user], folder: x.folder, messageId: x.messageId }
        : { users: [x.user], folder: x.folder, subject: x.subject || null, since: at.toISOString(), until: new Date(at.getTime() + 1000).toISOString() },
    };
  });
}

// The wizard's last action: runs the restores one after another and lists each message's outcome.
export async function restoreMail(v) {
  const m = v.mail;
  const log = h('ul', { 'aria-label': 'Progress' });
  const target = targetRequest(m);
  const where = { imap: `IMAP ${target.address}${target.into ? ` into ${target.into}` : ' (original folders)'}`, smtp: `SMTP ${target.address} to ${target.sendTo}`, export: `export ${target.exportName} (${target.exportFormat})` }[target.kind];
  main.replaceChildren(h('h1', {}, 'Restore mail'), h('p', {}, `From ${v.volume}@${v.snapshot} to ${where}.`), log);
  const outcomes = [];
  let failedRuns = 0;
  for (const run of runsOf(m)) {
    const item = h('li', {}, `${run.label}…`);
    log.append(item);
    try {
      const result = await runRecovery(request(v, run.filter, target), item);
      outcomes.push(...result.outcomes);
      item.className = result.error ? 'bad' : 'ok';
      item.textContent = `${result.error ? '✗' : '✓'} ${run.label}: ${result.outcomes.length} message(s) handled${result.error ? `; stopped: ${result.error}` : ''}`;
      if (result.error) failedRuns++;
    } catch (err) {
      failedRuns++;
      item.className = 'bad';
      item.textContent = `✗ ${run.label}: ${err.message}`;
    }
  }
  const counts = result => outcomes.filter(o => o.result === result).length;
  main.append(outcomes.length ? h('table', { 'aria-label': 'Outcome per message' },
    h('thead', {}, h('tr', {}, ['Outcome', 'Mailbox', 'Folder', 'Subject', 'Received', 'Flags', 'Put at', 'Detail'].map(t => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, outcomes.map(o => h('tr', { 'data-outcome': o.result },
      h('td', { class: o.result === 'failed' ? 'bad' : 'ok' }, outcomeText[o.result] ?? o.result), h('td', {}, o.message.user), h('td', {}, o.message.folder),
      h('td', {}, o.message.subject || '(no subject)'), h('td', {}, when(o.message.internalDate)), h('td', {}, [...o.message.flags, ...o.message.keywords].join(' ')),
      h('td', {}, o.target), h('td', {}, o.detail ?? ''))))) : null);
  const text = `${counts('restored')} restored, ${counts('skipped-duplicate')} already there, ${counts('failed')} failed`
    + (failedRuns ? `; ${failedRuns} recovery run(s) stopped (see above)` : '') + '.';
  say(text, counts('failed') || failedRuns ? 'error' : 'info');
}
