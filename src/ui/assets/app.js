// agentroom web view. Message text and every other value from the API is
// untrusted: it reaches the page through textContent only, never innerHTML.

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};

const state = {
  peers: [],
  online: new Map(),
  selected: null,
  messages: [],          // {key, peer, direction, id, reply_to, text, at, label}
  sendState: new Map(),  // envelope id -> queued|stored|delivered|failed
  results: new Map(),    // inbound envelope id -> {kind, text}
  items: new Map(),      // key -> <li>
  room: null,            // GET /v1/ui/room
};

async function api(method, path, body) {
  // Every call carries the CSRF header; the session cookie rides along.
  const opt = { method, headers: { 'X-Agentroom': '1' }, credentials: 'same-origin' };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty body */ }
  if (!r.ok) {
    const e = new Error((data && data.error) || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return data;
}

function banner(text) {
  const b = $('banner');
  b.textContent = text;
  b.hidden = !text;
}

function when(t) {
  if (!t) return '';
  const ms = t > 1e12 ? t : t * 1000;
  const d = new Date(ms);
  return d.toLocaleString();
}

function peerName(pk) {
  const p = state.peers.find((x) => x.pk === pk);
  return (p && (p.label || p.fingerprint)) || pk.slice(0, 10);
}

// ---- peers ----

function renderPeers() {
  const ul = $('peers');
  ul.replaceChildren();
  for (const p of state.peers) {
    const li = el('li');
    const b = el('button');
    b.type = 'button';
    b.dataset.pk = p.pk;
    b.setAttribute('aria-current', String(p.pk === state.selected));
    const dot = el('span', 'dot' + (state.online.get(p.pk) ? ' on' : ''));
    dot.setAttribute('aria-hidden', 'true');
    b.append(dot, el('span', 'peer-label', p.label || '(no label)'));
    if (p.verified) b.append(' ', el('span', 'verified', '✓ verified'));
    b.append(el('br'), el('span', 'mono', p.fingerprint));
    if (p.unread) b.append(' ', el('span', 'unread', `${p.unread} unread`));
    b.addEventListener('click', () => selectPeer(p.pk));
    li.append(b);
    ul.append(li);
  }
  if (!state.peers.length) ul.append(el('li', 'note', 'No peer yet: create or accept an invite.'));
}

function renderPeerCard() {
  const p = state.peers.find((x) => x.pk === state.selected);
  $('peer-card').hidden = !p;
  $('compose-text').disabled = !p;
  $('compose-send').disabled = !p;
  if (!p) return;
  $('pc-label').textContent = p.label || '(no label)';
  const on = state.online.get(p.pk);
  $('pc-online').textContent = on ? 'online' : (p.last_seen ? `last seen ${when(p.last_seen)}` : 'offline');
  $('pc-fp').textContent = p.fingerprint;
  $('pc-sn').textContent = p.safety_number;
  $('pc-verified').checked = !!p.verified;
}

async function loadPeers() {
  const peers = await api('GET', '/v1/peers');
  state.peers = peers.peers || [];
  if (!state.selected && state.peers.length) state.selected = state.peers[0].pk;
  renderPeers();
  renderPeerCard();
}

async function selectPeer(pk) {
  state.selected = pk;
  const p = state.peers.find((x) => x.pk === pk);
  if (p) p.unread = 0;
  renderPeers();
  renderPeerCard();
  await loadHistory();
}

// ---- messages ----

function stateOf(m) {
  if (m.direction === 'in') return 'received';
  return state.sendState.get(m.id) || m.state || 'queued';
}

function fillItem(li, m) {
  li.className = `msg ${m.direction}`;
  li.dataset.id = m.id;
  li.dataset.direction = m.direction;
  const meta = el('div', 'meta');
  const who = m.direction === 'in' ? (m.label || peerName(m.peer)) : 'me';
  meta.append(el('span', 'who', who));
  const t = el('time', null, when(m.at));
  if (m.at) t.dateTime = new Date(m.at > 1e12 ? m.at : m.at * 1000).toISOString();
  meta.append(t);
  const st = stateOf(m);
  meta.append(el('span', `state ${st}`, st));
  if (m.reply_to) meta.append(el('span', 'reply', 'reply'));
  const text = el('p', 'text', m.text);
  li.replaceChildren(meta, text);
  if (m.direction === 'in') {
    const r = state.results.get(m.id);
    li.append(el('div', 'result' + (r && r.kind === 'failed' ? ' failed' : ''), r ? r.text : ''));
  }
}

function nearBottom(log) {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

function addMessage(m) {
  const key = `${m.direction}:${m.id}`;
  const known = state.items.get(key);
  if (known) {
    const old = state.messages.find((x) => x.key === key);
    Object.assign(old, m, { key });
    fillItem(known, old);
    return;
  }
  m.key = key;
  state.messages.push(m);
  if (m.peer !== state.selected) {
    const p = state.peers.find((x) => x.pk === m.peer);
    if (p && m.direction === 'in') { p.unread = (p.unread || 0) + 1; renderPeers(); }
    return;
  }
  const log = $('log');
  const stick = nearBottom(log);
  const li = el('li');
  fillItem(li, m);
  state.items.set(key, li);
  log.append(li);
  if (stick) log.scrollTop = log.scrollHeight;
}

function refresh(direction, id) {
  const key = `${direction}:${id}`;
  const li = state.items.get(key);
  const m = state.messages.find((x) => x.key === key);
  if (li && m) fillItem(li, m);
}

async function loadHistory() {
  const log = $('log');
  log.replaceChildren();
  state.items.clear();
  const pk = state.selected;
  if (!pk) return;
  const note = $('history-note');
  try {
    const rows = await api('GET', `/v1/history?peer=${encodeURIComponent(pk)}&limit=200`);
    note.textContent = '';
    for (const r of rows) {
      const m = { peer: r.peer, label: r.label, direction: r.direction === 'out' ? 'out' : 'in',
        id: r.id, reply_to: r.reply_to, text: r.text, at: r.at || r.sent_at, state: r.state };
      const key = `${m.direction}:${m.id}`;
      if (!state.messages.some((x) => x.key === key)) { m.key = key; state.messages.push(m); }
    }
  } catch (e) {
    note.textContent = e.status === 404
      ? 'No stored history on this daemon: showing messages since this page opened.'
      : `History unavailable (${e.message}): showing messages since this page opened.`;
  }
  const mine = state.messages.filter((x) => x.peer === pk);
  mine.sort((a, b) => (a.at || 0) - (b.at || 0));
  for (const m of mine) {
    const li = el('li');
    fillItem(li, m);
    state.items.set(m.key, li);
    log.append(li);
  }
  log.scrollTop = log.scrollHeight;
}

// ---- live events ----

const handlers = {
  received(ev) {
    const m = ev.message;
    addMessage({ peer: m.from, label: m.label, direction: 'in', id: m.id, reply_to: m.reply_to,
      text: m.text, at: m.sent_at || Date.now() });
  },
  sent(ev) {
    state.sendState.set(ev.id, ev.status);
    refresh('out', ev.id);
  },
  send_failed(ev) {
    state.sendState.set(ev.id, 'failed');
    refresh('out', ev.id);
  },
  replied(ev) {
    state.results.set(ev.reply_to, { kind: 'answered', text: 'answered by the handler' });
    refresh('in', ev.reply_to);
    addMessage({ peer: ev.to, direction: 'out', id: ev.id, reply_to: ev.reply_to, text: ev.text,
      at: Date.now() });
  },
  no_reply(ev) {
    state.results.set(ev.id, { kind: 'no_reply', text: 'handled, no reply' });
    refresh('in', ev.id);
  },
  handler_error(ev) {
    const how = ev.timed_out ? 'timed out' : ev.signal != null ? `killed by signal ${ev.signal}`
      : `exit code ${ev.exit_code}`;
    const tail = ev.stderr ? `\n${ev.stderr.slice(-600)}` : '';
    state.results.set(ev.id, { kind: 'failed', text: `handler failed: ${how}${tail}` });
    refresh('in', ev.id);
  },
  peer_online(ev) {
    state.online.set(ev.peer.pk, ev.online);
    renderPeers();
    renderPeerCard();
  },
  paired() { loadPeers().catch(() => {}); },
  connected() { loadStatus().catch(() => {}); },
  reconnect() { loadStatus().catch(() => {}); },
  disconnect() { loadStatus().catch(() => {}); },
  lagged(ev) { banner(`The page fell behind and missed ${ev.missed} events: reload to catch up.`); },
  // The switch as another page or client set it.
  paused() { $('pause').checked = true; },
  resumed() { $('pause').checked = false; },
};

function listen() {
  const es = new EventSource('/v1/events', { withCredentials: true });
  const conn = $('conn');
  es.onopen = () => { conn.textContent = 'live'; };
  es.onerror = () => { conn.textContent = 'reconnecting…'; };
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (e) => {
      let data;
      try { data = JSON.parse(e.data); } catch (_) { return; }
      fn(data);
    });
  }
}

// ---- status, pause ----

async function loadStatus() {
  const [st, h] = await Promise.all([api('GET', '/v1/status'), api('GET', '/v1/handler')]);
  $('me').textContent = st.fingerprint;
  const dl = $('status');
  const rows = [
    ['pid', st.pid],
    ['waiting', st.inbox_waiting],
    ['leased', st.inbox_leased],
    ['outbox', st.outbox_pending],
  ];
  for (const r of st.relays || []) rows.push(['relay', `${r.url} ${r.up ? 'up' : 'down'}`]);
  if (state.room && state.room.running) {
    const room = state.room;
    rows.push(['room relay', room.relay || '']);
    rows.push(['tunnel', room.tunnel || '']);
    rows.push(['room up', `${Math.floor((room.uptime_secs || 0) / 60)} min`]);
    rows.push(['at relay', room.relay_pending == null ? 'unknown' : room.relay_pending]);
  }
  const kids = [];
  for (const [k, v] of rows) {
    const dt = el('dt', null, k);
    const dd = el('dd', null, v);
    dd.dataset.key = k;
    kids.push(dt, dd);
  }
  dl.replaceChildren(...kids);
  $('pause').checked = !!h.paused;
}

async function setPaused(paused) {
  const h = await api('POST', paused ? '/v1/handler/pause' : '/v1/handler/resume', {});
  $('pause').checked = !!h.paused;
}

// ---- forms ----

async function send(text) {
  const pk = state.selected;
  const r = await api('POST', '/v1/send', { peer: pk, text, wait_sent_ms: 0 });
  addMessage({ peer: pk, direction: 'out', id: r.id, text, at: Date.now(),
    state: r.status === 'queued' ? 'queued' : r.status });
}

function wireForms() {
  const box = $('compose-text');
  const submit = async () => {
    const text = box.value;
    if (!text.trim() || !state.selected) return;
    box.value = '';
    try { await send(text); banner(''); } catch (e) { box.value = text; banner(`Not sent: ${e.message}`); }
  };
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  $('compose').addEventListener('submit', (e) => { e.preventDefault(); submit(); });
  $('pause').addEventListener('change', (e) => {
    setPaused(e.target.checked).catch((err) => { e.target.checked = !e.target.checked; banner(err.message); });
  });
  $('pc-verified').addEventListener('change', async (e) => {
    try {
      // The same mark as `agentroom peers verify` (kept in the home's store; it
      // drops by itself when either side's key changes).
      const v = await api('POST', '/v1/peers/verify', { peer: state.selected, verified: e.target.checked });
      state.peers = state.peers.map((x) => (x.pk === v.pk ? v : x));
      renderPeers();
    } catch (err) { e.target.checked = !e.target.checked; banner(err.message); }
  });
  $('invite-create').addEventListener('submit', async (e) => {
    e.preventDefault();
    const label = $('invite-label').value.trim();
    try {
      const r = await api('POST', '/v1/invites', label ? { label } : {});
      $('invite-line').value = `agentroom invite accept '${r.invite}'`;
      $('invite-out').hidden = false;
      $('invite-line').select();
      banner('');
    } catch (err) { banner(`Invite not created: ${err.message}`); }
  });
  $('invite-copy').addEventListener('click', async () => {
    const line = $('invite-line');
    line.select();
    try { await navigator.clipboard.writeText(line.value); } catch (_) { /* selected: Ctrl+C works */ }
  });
  $('invite-accept').addEventListener('submit', async (e) => {
    e.preventDefault();
    // Accept the bare invite or the whole `agentroom invite accept '…'` line.
    const raw = $('invite-in').value.trim().replace(/^agentroom invite accept\s+/, '').replace(/^'|'$/g, '');
    try {
      const r = await api('POST', '/v1/invites/accept', { invite: raw });
      $('invite-in').value = '';
      state.selected = r.peer;
      await loadPeers();
      await loadHistory();
      banner('');
    } catch (err) { banner(`Invite not accepted: ${err.message}`); }
  });
}

// ---- start ----

async function login() {
  const m = location.hash.match(/^#code=([0-9a-f]{16,128})$/);
  if (!m) return;
  // Drop the code from the address bar and history before anything else.
  history.replaceState(null, '', '/ui/');
  try {
    await api('POST', '/ui/login', { code: m[1] });
  } catch (e) {
    banner(e.message);
  }
}

async function start() {
  wireForms();
  await login();
  try {
    await loadStatus();
  } catch (e) {
    if (e.status === 401) {
      banner('Not logged in: run `agentroom ui` for a new link (each link works once).');
      $('conn').textContent = 'logged out';
      return;
    }
    banner(e.message);
  }
  listen();
  await loadPeers();
  await loadHistory();
  setInterval(() => { loadStatus().catch(() => {}); }, 3000);
  const room = () => api('GET', '/v1/ui/room').then((r) => { state.room = r; }).catch(() => {});
  await room();
  setInterval(room, 10000);
  document.body.dataset.ready = '1';
}

start();
