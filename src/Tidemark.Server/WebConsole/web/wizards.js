// Wizards of the Tidemark web console (ADR 0016): each step is a form, each result an ordinary API
// call (the server checks roles and records the audit event under the signed-in name), and a
// wizard that makes several things says what was already made when a step fails.
import { main, status, h, api, say, fail, can, when, ago, parseSize, enc } from './ui.js';

// A step-by-step form: steps[i] = { title, render(v) -> Node, check(v) -> problem|null, enter(v) -> Promise }.
// enter runs before a step is shown (the preview asks the server there); a failure keeps the step before
// (one marked `shown` has already said why). steps may be changed while the wizard runs (a choice that
// leads on to other steps), and finishLabel may be a function of that choice.
export function stepper(title, v, steps, finish, finishLabel) {
  let step = 0;
  const render = () => {
    const s = steps[step];
    main.replaceChildren(
      h('h1', {}, title),
      h('ol', { class: 'steps', 'aria-label': 'Steps' }, steps.map((x, i) => h('li', { 'aria-current': i === step ? 'step' : null }, `${i + 1}. ${x.title}`))),
      h('form', {
        onsubmit: async e => {
          e.preventDefault();
          const problem = s.check?.(v);
          if (problem) { say(problem, 'error'); return; }
          status.replaceChildren();
          if (step === steps.length - 1) { await finish(); return; }
          try {
            await steps[step + 1].enter?.(v);
          } catch (err) {
            if (!err.shown) fail(err);
            return;
          }
          step++;
          render();
        },
      }, s.render(v), h('p', { class: 'actions' },
        step > 0 ? h('button', { type: 'button', onclick: () => { step--; status.replaceChildren(); render(); } }, 'Back') : null,
        h('button', { type: 'submit', class: 'primary' }, step < steps.length - 1 ? 'Next' : typeof finishLabel === 'function' ? finishLabel() : finishLabel))));
    main.querySelector('form input, form select')?.focus();
  };
  render();
}

const input = (v, label, key, attrs = {}) => h('label', {}, label, h('input', { name: key, value: v[key] ?? '', oninput: e => { v[key] = e.target.value; }, ...attrs }));
const select = (v, label, key, options) => h('label', {}, label, h('select', { name: key, onchange: e => { v[key] = e.target.value; } },
  options.map(([value, text]) => h('option', { value, selected: v[key] === value }, text))));
const count = text => (text === '' || text === undefined || text === null ? null : Number(text));

// ---------- protection policy ----------

export async function policyWizard(query) {
  const editing = query.get('name');
  const [volumes, groups] = await Promise.all([api('GET', '/api/v1/volumes'), api('GET', '/api/v1/groups')]);
  const v = { name: '', target: '', schedule: 'every 1h', timeZone: '', changed: '', keepLast: '24', keepHourly: '', keepDaily: '7', keepWeekly: '', keepMonthly: '', preview: null };
  if (editing) {
    const p = (await api('GET', `/api/v1/policies/${enc(editing)}`)).definition;
    Object.assign(v, {
      name: p.name, target: p.volume ? `volume:${p.volume}` : `group:${p.group}`, schedule: p.schedule ?? '', timeZone: p.timeZone ?? '',
      changed: p.changedBytes ? String(p.changedBytes) : '', keepLast: p.keepLast ?? '', keepHourly: p.keepHourly ?? '', keepDaily: p.keepDaily ?? '', keepWeekly: p.keepWeekly ?? '', keepMonthly: p.keepMonthly ?? '',
      hosts: p.hosts, fallback: p.fallback, enabled: p.enabled, verify: p.verify, preferConsistent: p.preferConsistent,
    });
  } else {
    const preset = query.get('volume');
    v.target = preset ? `volume:${preset}` : volumes.length ? `volume:${volumes[0].name}` : groups.length ? `group:${groups[0].name}` : '';
    v.name = v.target ? `${v.target.split(':')[1]}-protect`.slice(0, 48) : '';
  }
  if (!editing && !can('policy.create')) { main.replaceChildren(h('h1', {}, 'Protection policy'), h('p', {}, 'Your role may not create policies.')); return; }
  const request = () => {
    const [kind, target] = v.target.split(/:(.*)/s);
    return {
      name: v.name, volume: kind === 'volume' ? target : null, group: kind === 'group' ? target : null,
      schedule: v.schedule.trim() || null, timeZone: v.timeZone.trim() || null, changedBytes: v.changed ? parseSize(v.changed) : null,
      keepLast: count(v.keepLast), keepHourly: count(v.keepHourly), keepDaily: count(v.keepDaily), keepWeekly: count(v.keepWeekly), keepMonthly: count(v.keepMonthly),
      // Settings the wizard has no step for (agents, verification, consistency preference) go back
      // as they were: a PUT replaces the whole policy, and editing its schedule must not switch
      // off its verification.
      enabled: v.enabled ?? true, hosts: v.hosts ?? null, fallback: v.fallback ?? null,
      verify: v.verify ?? null, preferConsistent: v.preferConsistent ?? null,
    };
  };
  const targets = [...volumes.map(x => [`volume:${x.name}`, `volume ${x.name}`]), ...groups.map(g => [`group:${g.name}`, `group ${g.name} (${g.volumes.join(', ')})`])];
  const keepField = (label, key) => input(v, label, key, { type: 'number', min: 1, max: 100000, size: 6 });
  stepper(editing ? `Protection policy ${editing}` : 'New protection policy', v, [
    {
      title: 'What',
      render: () => h('fieldset', {}, h('legend', {}, 'What the policy snapshots'),
        input(v, 'Policy name', 'name', { required: true, readOnly: !!editing, pattern: '[A-Za-z0-9][A-Za-z0-9_-]{0,47}' }),
        targets.length ? select(v, 'Volume or group', 'target', targets) : h('p', { class: 'warn' }, 'There is no volume yet: create one first.')),
      check: () => !/^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/.test(v.name) ? 'Policy name: 1-48 letters, digits, - or _, starting with a letter or digit.'
        : !v.target ? 'Choose a volume or group.' : null,
    },
    {
      title: 'When',
      render: () => h('fieldset', {}, h('legend', {}, 'When it takes a snapshot'),
        input(v, 'Schedule (every 15m, hourly, daily 02:30, or a cron line; empty: none)', 'schedule', { list: 'schedules', size: 30 }),
        h('datalist', { id: 'schedules' }, ['every 15m', 'every 1h', 'hourly', 'daily 02:30', 'weekly sun 03:00'].map(x => h('option', { value: x }))),
        input(v, 'Time zone of the schedule (e.g. Europe/Berlin; empty: UTC)', 'timeZone'),
        input(v, 'Also after this much changed data (e.g. 512M; empty: no trigger)', 'changed')),
      check: () => !v.schedule.trim() && !v.changed ? 'Give a schedule, a changed-data trigger, or both.'
        : v.changed && !parseSize(v.changed) ? 'Changed data must be a size, e.g. 512M.' : null,
    },
    {
      title: 'Retention',
      render: () => h('fieldset', {}, h('legend', {}, 'Which of its snapshots it keeps (empty: that rule is off; all empty: keep everything)'),
        keepField('Keep the last', 'keepLast'), keepField('Hourly: one per hour, for', 'keepHourly'), keepField('Daily: one per day, for', 'keepDaily'),
        keepField('Weekly: one per week, for', 'keepWeekly'), keepField('Monthly: one per month, for', 'keepMonthly')),
      check: () => ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly'].some(k => v[k] !== '' && v[k] !== null && !(Number(v[k]) >= 1))
        ? 'Each retention count is empty or at least 1.' : null,
    },
    {
      title: 'Preview',
      // The server decides with the code the policy runs (POST /api/v1/policies/preview).
      enter: async () => { v.preview = await api('POST', '/api/v1/policies/preview', request()); },
      render: () => previewOf(v),
    },
  ], async () => {
    try {
      if (editing) await api('PUT', `/api/v1/policies/${enc(editing)}`, request());
      else await api('POST', '/api/v1/policies', request());
      say(`Policy ${v.name} ${editing ? 'saved' : 'created'}.`);
      const target = request().volume;
      main.append(h('p', {}, target ? h('a', { href: `#/volumes/${enc(target)}` }, `Open ${target}`) : null));
    } catch (err) {
      fail(err);
    }
  }, editing ? 'Save policy' : 'Create policy');
}

function previewOf(v) {
  const p = v.preview;
  const label = { keep: 'keep', drop: 'delete', protected: 'keep (protected)', unmanaged: 'keep (not this policy\'s)' };
  return h('div', {},
    h('h2', {}, 'What the retention does to the existing snapshots'),
    h('p', {}, p.snapshots.length === 0 ? 'The target has no snapshots yet.' : `It keeps ${p.keep} and deletes ${p.drop} of the ${p.snapshots.length} snapshots there now.`),
    p.asIfOwned && p.snapshots.length ? h('p', { class: 'muted' }, 'This policy has made none of them: the preview applies its rule as if it had. It only ever deletes snapshots it made itself.') : null,
    p.snapshots.length ? h('table', { 'aria-label': 'Retention preview' },
      h('thead', {}, h('tr', {}, ['Snapshot', 'Taken', 'Verdict', 'Why'].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, p.snapshots.map(s => h('tr', { 'data-verdict': s.verdict },
        h('td', {}, s.address), h('td', {}, `${when(s.createdAt)} (${ago(s.createdAt)})`),
        h('td', { class: s.verdict === 'drop' ? 'bad' : 'ok' }, label[s.verdict] ?? s.verdict), h('td', {}, s.reason ?? ''))))) : null);
}


// ---------- recovery: a point in time, then a view of it and an export, or mail out of it ----------

export async function recoveryWizard(query) {
  // Loaded here, not with the page: the dashboard's first load does not carry the mail steps.
  const { mailStoresOn, mayRecoverMail, newMailState, mailSteps, restoreMail } = await import('./mail.js');
  if (!can('view.create') && !mayRecoverMail()) { main.replaceChildren(h('h1', {}, 'Recover'), h('p', {}, 'Your role may not open views or recover mail.')); return; }
  const volumes = (await api('GET', '/api/v1/volumes')).filter(x => x.snapshots > 0);
  const v = {
    volume: query.get('volume') ?? volumes[0]?.name ?? '', snapshots: [], snapshot: '', at: '', view: '', protocol: 'nbd', readOnly: true,
    what: 'disk', mailStores: { stores: [], unreachable: [] }, mail: newMailState(),
  };
  const pickAt = () => {
    // The newest snapshot taken at or before the chosen time: the state the administrator asked for.
    const t = new Date(v.at).getTime();
    const hit = v.snapshots.find(s => new Date(s.createdAt).getTime() <= t);
    if (hit) v.snapshot = hit.name;
    return hit;
  };
  const steps = [
    {
      title: 'Volume',
      render: () => h('fieldset', {}, h('legend', {}, 'Which volume'),
        volumes.length ? select(v, 'Volume', 'volume', volumes.map(x => [x.name, `${x.name} (${x.snapshots} snapshots)`])) : h('p', { class: 'warn' }, 'No volume has a snapshot yet.')),
      check: () => (v.volume ? null : 'Choose a volume with snapshots.'),
    },
    {
      title: 'Point in time',
      enter: async () => {
        v.snapshots = [...await api('GET', `/api/v1/volumes/${enc(v.volume)}/snapshots`)].sort((a, b) => new Date(b.createdAt) - new Date(a.createdAt));
        if (!v.snapshots.some(s => s.name === v.snapshot)) v.snapshot = v.snapshots[0]?.name ?? '';
      },
      render: () => {
        const list = h('fieldset', { class: 'timeline-pick' }, h('legend', {}, `Snapshots of ${v.volume}, newest first`),
          h('ol', { class: 'timeline' }, v.snapshots.slice(0, 500).map(s => h('li', {}, h('label', { class: 'inline' },
            h('input', { type: 'radio', name: 'snapshot', value: s.name, checked: s.name === v.snapshot, onchange: () => { v.snapshot = s.name; } }),
            h('strong', {}, s.name), ' ', h('span', { class: 'muted' }, `${when(s.createdAt)} (${ago(s.createdAt)})`),
            s.consistency ? h('span', { class: 'badge' }, s.consistency) : null,
            s.groupSnapshot ? h('span', { class: 'badge' }, `group ${s.groupSnapshot}`) : null)))));
        const at = h('input', { type: 'datetime-local', name: 'at', value: v.at, step: 1 });
        return h('div', {},
          h('fieldset', {}, h('legend', {}, 'Or go to a time'),
            h('label', {}, 'The state as of (local time)', at),
            h('button', { type: 'button', onclick: () => {
              v.at = at.value;
              if (!pickAt()) { say('No snapshot is that old: pick a later time.', 'error'); return; }
              list.querySelector(`input[value="${CSS.escape(v.snapshot)}"]`).checked = true;
              say(`Picked ${v.volume}@${v.snapshot}, the newest snapshot at or before that time.`);
            } }, 'Find the snapshot')),
          list);
      },
      check: () => (v.snapshot ? null : 'Pick a snapshot.'),
    },
    {
      title: 'What',
      // Mail is offered for a volume that a paired host's agent declares as holding a mail store.
      enter: async () => {
        v.mailStores = mayRecoverMail() ? await mailStoresOn(v.volume) : { stores: [], unreachable: [] };
        if (!v.mailStores.stores.length || !can('view.create')) choose(v.mailStores.stores.length ? 'mail' : 'disk');
      },
      render: () => {
        const { stores, unreachable } = v.mailStores;
        const option = (value, text, disabled, why) => h('label', { class: 'inline' },
          h('input', { type: 'radio', name: 'what', value, checked: v.what === value, disabled, onchange: () => choose(value) }), text,
          why ? h('span', { class: 'muted' }, ` (${why})`) : null);
        return h('fieldset', {}, h('legend', {}, `What to recover from ${v.volume}@${v.snapshot}`),
          option('disk', 'The whole volume: open a view of the snapshot and export it to a recovery host', !can('view.create'), can('view.create') ? null : 'your role may not open views'),
          option('mail', 'Mail: find messages in it and restore them', !stores.length,
            !mayRecoverMail() ? 'your role may not recover mail'
              : stores.length ? `mail store ${[...new Set(stores.map(x => `${x.store.name} on ${x.host}`))].join(', ')}`
                : `no paired host's agent declares a mail store on ${v.volume}${unreachable.length ? `; not answering: ${unreachable.join(', ')}` : ''}`));
      },
    },
  ];
  const diskSteps = [
    {
      title: 'View',
      enter: async () => { v.view = `${v.volume}-${v.snapshot}-recovery`.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64); },
      render: () => h('fieldset', {}, h('legend', {}, `A writable view of ${v.volume}@${v.snapshot} (the snapshot itself never changes)`),
        input(v, 'View name', 'view', { required: true })),
      check: () => (/^[A-Za-z0-9._-]{1,64}$/.test(v.view) ? null : 'View name: 1-64 letters, digits, dots, dashes or underscores.'),
    },
    {
      title: 'Export',
      render: () => h('fieldset', {}, h('legend', {}, 'How the recovery host reaches the view'),
        select(v, 'Export over', 'protocol', can('export.create') ? [['nbd', 'NBD'], ['iscsi', 'iSCSI'], ['none', 'Do not export']] : [['none', 'Do not export']]),
        h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'readOnly', checked: v.readOnly, onchange: e => { v.readOnly = e.target.checked; } }), 'Read-only export')),
    },
  ];
  // The steps after "What" follow the choice made there.
  const choose = what => {
    v.what = what;
    steps.splice(3, Infinity, ...(what === 'mail' ? mailSteps(v) : diskSteps));
  };
  choose('disk');
  stepper('Recover from a point in time', v, steps, () => (v.what === 'mail' ? restoreMail(v) : openView(v)), () => (v.what === 'mail' ? 'Restore' : 'Recover'));
}

// The disk path's last action: the view, then its export, each an ordinary API call.
async function openView(v) {
  const log = h('ul', { 'aria-label': 'Progress' });
  main.replaceChildren(h('h1', {}, 'Recover from a point in time'), log);
  const done = [];
  const run = async (text, fn) => {
    const item = h('li', {}, `${text}…`);
    log.append(item);
    const result = await fn();
    item.textContent = `✓ ${text}`;
    item.className = 'ok';
    done.push(text);
    return result;
  };
  try {
    await run(`Open view ${v.view} of ${v.volume}@${v.snapshot}`, () => api('POST', '/api/v1/views', { snapshot: `${v.volume}@${v.snapshot}`, name: v.view }));
    if (v.protocol !== 'none') {
      const x = await run(`Export it over ${v.protocol}`, () => api('POST', '/api/v1/exports', { target: v.view, protocol: v.protocol, readOnly: v.readOnly }));
      log.after(h('p', {}, 'Connect the recovery host to ', h('code', { id: 'recovery-address' }, x.url ?? x.iqn ?? x.name), '.'));
    }
    say(`View ${v.view} of ${v.volume}@${v.snapshot} is ready.`);
  } catch (err) {
    fail(err);
    log.append(h('li', { class: 'bad' }, `✗ stopped: ${err.message}`));
    log.after(h('p', {}, done.length ? `Already done: ${done.join('; ')}. Export the view from the Volumes page, or delete it there.` : 'Nothing was created.'));
  }
}
