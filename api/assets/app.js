// fleetstream dispatch dashboard.
//
// Plain ES module, no dependencies. Talks to the fleetstream API:
//   GET /v1/dashboard/cells?res=7          (Authorization: Bearer <token>)
//   GET /v1/drivers/nearby?lat&lng&radius_km&limit
//   SSE /v1/dashboard/events?access_token=<token>   (events `trip` and `cells`)

const TOKEN_KEY = 'fleetstream.token';
const LAYER_KEY = 'fleetstream.layer';
const RESOLUTION = 7;
const NEARBY_RADIUS_KM = 3;
const NEARBY_LIMIT = 10;
const POLL_MS = 5000;
const FEED_MAX = 50;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;

// Trips in these states are no longer open.
const CLOSED_STATUSES = new Set(['completed', 'cancelled', 'no_driver']);
const STATUS_ORDER = ['requested', 'offered', 'matched', 'started'];

// SVG user space of #map (must match the viewBox in index.html).
const VIEW_W = 1000;
const VIEW_H = 640;
const PAD = 16;
const KM_PER_DEG_LAT = 111.32;

const SVG_NS = 'http://www.w3.org/2000/svg';

// Colour ramps (light -> dark), sequential so they read on a light page.
const RAMPS = {
  supply: ['#f1f5fb', '#7fb0dc', '#1f5c99'],
  demand: ['#fffbe0', '#f7a24a', '#b3261e'],
  surge: ['#fffbe0', '#f7a24a', '#b3261e'],
};
const NO_SURGE_FILL = '#eef0ee';

const $ = (sel) => document.querySelector(sel);

const state = {
  token: null,
  layer: 'demand',
  data: null, // last /v1/dashboard/cells payload
  projection: null,
  source: null, // EventSource
  live: false,
  pollTimer: null,
  reconnectTimer: null,
  reconnectDelay: RECONNECT_MIN_MS,
  clicked: null, // { lat, lng } of the last map click
  nearby: [],
  nearbySeq: 0,
  feedReceived: 0,
  seenEvents: [],
};

const cellEls = new Map(); // cell id -> <polygon>
const tripEls = new Map(); // trip id -> <circle>

// ---------------------------------------------------------------- storage

function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Storage disabled: the token then only lives for this page view.
  }
}

// Token from ?token=... (moved into localStorage and removed from the
// address bar), else from localStorage.
function takeToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl !== null) {
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
    const token = fromUrl.trim();
    if (token) {
      storageSet(TOKEN_KEY, token);
      return token;
    }
  }
  const stored = storageGet(TOKEN_KEY);
  return stored && stored.trim() ? stored.trim() : null;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

async function api(path) {
  let res;
  try {
    res = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: 'application/json' },
      cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError(0, `network error (${err.message})`);
  }
  if (!res.ok) {
    let body = null;
    try {
      body = await res.json();
    } catch {
      // Not JSON: fall back to the status text.
    }
    const message = body && typeof body.error === 'string' ? body.error : res.statusText || 'request failed';
    throw new ApiError(res.status, message, body && body.field);
  }
  return res.json();
}

function handleApiError(err, what) {
  if (err.status === 401) {
    signOut('The token was rejected (HTTP 401). Paste a valid token.');
    return;
  }
  let msg = `${what} failed: ${err.message}`;
  if (err.field) msg += ` (field: ${err.field})`;
  if (err.status) msg += ` [HTTP ${err.status}]`;
  showError(msg);
}

function showError(message) {
  const box = $('#error');
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  const box = $('#error');
  box.hidden = true;
  box.textContent = '';
}

// ---------------------------------------------------------------- session

function showLogin(message) {
  $('#dashboard').hidden = true;
  $('#signout').hidden = true;
  $('#login').hidden = false;
  if (message) showError(message);
  else clearError();
  $('#token-input').focus();
}

function start() {
  $('#login').hidden = true;
  $('#dashboard').hidden = false;
  $('#signout').hidden = false;
  refreshCells();
  connect();
}

function stopLive() {
  if (state.source) state.source.close();
  state.source = null;
  clearTimeout(state.reconnectTimer);
  stopPolling();
  setLive(false);
}

function signOut(message) {
  stopLive();
  state.token = null;
  storageSet(TOKEN_KEY, null);
  showLogin(message);
}

// ---------------------------------------------------------------- live stream

function setLive(live) {
  state.live = live;
  const badge = $('#status');
  badge.textContent = live ? 'live' : 'offline';
  badge.classList.toggle('live', live);
  badge.classList.toggle('offline', !live);
}

function startPolling() {
  if (state.pollTimer || !state.token) return;
  state.pollTimer = setInterval(refreshCells, POLL_MS);
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

function connect() {
  clearTimeout(state.reconnectTimer);
  if (state.source) state.source.close();
  state.source = null;
  if (!state.token) return;
  if (typeof EventSource === 'undefined') {
    startPolling();
    return;
  }
  const es = new EventSource(`/v1/dashboard/events?access_token=${encodeURIComponent(state.token)}`);
  state.source = es;

  es.addEventListener('open', () => {
    if (state.source !== es) return;
    state.reconnectDelay = RECONNECT_MIN_MS;
    stopPolling();
    setLive(true);
  });

  es.addEventListener('cells', (ev) => {
    if (state.source !== es) return;
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      console.warn('fleetstream: ignoring malformed cells event');
      return;
    }
    applyCells(data);
  });

  es.addEventListener('trip', (ev) => {
    if (state.source !== es) return;
    onTripEvent(ev.data);
  });

  es.addEventListener('error', () => {
    if (state.source !== es) return;
    setLive(false);
    startPolling();
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (for example an HTTP error status). A plain
      // request tells us whether the token is the problem; then retry.
      es.close();
      state.source = null;
      const delay = state.reconnectDelay;
      if (delay === RECONNECT_MIN_MS) refreshCells(); // first failure only; polling covers the rest
      state.reconnectDelay = Math.min(delay * 2, RECONNECT_MAX_MS);
      state.reconnectTimer = setTimeout(connect, delay);
    }
    // Otherwise readyState is CONNECTING: EventSource retries by itself.
  });
}

// ---------------------------------------------------------------- cells + trips

async function refreshCells() {
  if (!state.token) return;
  try {
    const data = await api(`/v1/dashboard/cells?res=${RESOLUTION}`);
    applyCells(data);
  } catch (err) {
    handleApiError(err, 'Loading cells');
  }
}

function applyCells(data) {
  if (!data || typeof data !== 'object') return;
  // Poll responses and stream events can cross; keep the newest snapshot.
  const prev = state.data && Date.parse(state.data.generated_at);
  const next = Date.parse(data.generated_at);
  if (Number.isFinite(prev) && Number.isFinite(next) && next < prev) return;

  state.data = {
    ...data,
    cells: Array.isArray(data.cells) ? data.cells.filter(validCell) : [],
    trips: Array.isArray(data.trips) ? data.trips : [],
  };
  state.projection = makeProjection(state.data.cells) || state.projection;
  clearError();
  renderCells();
  renderTrips();
  renderMarker();
  renderTable();
  renderLegend();

  const updated = $('#updated');
  if (Number.isFinite(next)) {
    updated.textContent = `updated ${new Date(next).toLocaleTimeString()}`;
    updated.title = data.generated_at;
  }
}

function validCell(c) {
  return (
    c &&
    typeof c.cell === 'string' &&
    Array.isArray(c.boundary) &&
    c.boundary.length >= 3 &&
    c.boundary.every((p) => Array.isArray(p) && Number.isFinite(p[0]) && Number.isFinite(p[1]))
  );
}

function openTrips() {
  const trips = (state.data && state.data.trips) || [];
  return trips.filter(
    (t) => t && typeof t.trip_id === 'string' && !CLOSED_STATUSES.has(t.status),
  );
}

function toNumber(v) {
  const n = typeof v === 'number' ? v : Number.parseFloat(v);
  return Number.isFinite(n) ? n : 0;
}

function surgeValue(c) {
  if (c.surge === null || c.surge === undefined || c.surge === '') return null;
  const n = Number.parseFloat(c.surge);
  return Number.isFinite(n) ? n : null;
}

// ---------------------------------------------------------------- projection

// Equirectangular projection of the cells' bounding box into the SVG
// viewBox, with longitudes scaled by cos(mid latitude).
function makeProjection(cells) {
  let minLat = Infinity;
  let maxLat = -Infinity;
  let minLng = Infinity;
  let maxLng = -Infinity;
  for (const c of cells) {
    for (const [lat, lng] of c.boundary) {
      if (lat < minLat) minLat = lat;
      if (lat > maxLat) maxLat = lat;
      if (lng < minLng) minLng = lng;
      if (lng > maxLng) maxLng = lng;
    }
  }
  if (!Number.isFinite(minLat)) return null;
  // Never let a degenerate box blow up the scale.
  const minSpan = 0.005;
  if (maxLat - minLat < minSpan) {
    const mid = (minLat + maxLat) / 2;
    minLat = mid - minSpan / 2;
    maxLat = mid + minSpan / 2;
  }
  if (maxLng - minLng < minSpan) {
    const mid = (minLng + maxLng) / 2;
    minLng = mid - minSpan / 2;
    maxLng = mid + minSpan / 2;
  }
  const k = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180);
  const w = (maxLng - minLng) * k;
  const h = maxLat - minLat;
  const s = Math.min((VIEW_W - 2 * PAD) / w, (VIEW_H - 2 * PAD) / h);
  const ox = (VIEW_W - w * s) / 2;
  const oy = (VIEW_H - h * s) / 2;
  return {
    // SVG units per kilometre (same in x and y after the cos correction).
    unitsPerKm: s / KM_PER_DEG_LAT,
    toXY(lat, lng) {
      return [ox + (lng - minLng) * k * s, oy + (maxLat - lat) * s];
    },
    toLatLng(x, y) {
      return { lat: maxLat - (y - oy) / s, lng: minLng + (x - ox) / (k * s) };
    },
  };
}

const r1 = (n) => Math.round(n * 10) / 10;

function svgEl(name, attrs = {}) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// ---------------------------------------------------------------- colours

function hexToRgb(hex) {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function ramp(name, t) {
  const stops = RAMPS[name].map(hexToRgb);
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  const rgb = stops[i].map((a, j) => Math.round(a + (stops[i + 1][j] - a) * f));
  return `rgb(${rgb.join(',')})`;
}

function demandRatio(supply, demand) {
  if (demand <= 0) return 0;
  if (supply <= 0) return Infinity;
  return demand / supply;
}

function cellFill(c, maxSupply) {
  const supply = toNumber(c.supply);
  const demand = toNumber(c.demand);
  switch (state.layer) {
    case 'supply':
      return ramp('supply', supply / maxSupply);
    case 'surge': {
      const s = surgeValue(c);
      return s === null ? NO_SURGE_FILL : ramp('surge', (s - 1) / 2);
    }
    default:
      return ramp('demand', demandRatio(supply, demand) / 2);
  }
}

function renderLegend() {
  const cells = (state.data && state.data.cells) || [];
  const maxSupply = Math.max(1, ...cells.map((c) => toNumber(c.supply)));
  const labels = {
    supply: ['0 drivers', `${maxSupply} drivers`],
    demand: ['no open trips', '≥ 2 trips per driver'],
    surge: ['1.0×', '≥ 3.0×'],
  }[state.layer];
  const colours = RAMPS[state.layer];
  $('#legend-low').textContent = labels[0];
  $('#legend-high').textContent = labels[1];
  $('#legend-ramp').style.background = `linear-gradient(to right, ${colours.join(', ')})`;
}

// ---------------------------------------------------------------- map rendering

function renderCells() {
  const layer = $('#cells-layer');
  const cells = state.data.cells;
  const proj = state.projection;
  const maxSupply = Math.max(1, ...cells.map((c) => toNumber(c.supply)));
  const seen = new Set();

  for (const c of cells) {
    seen.add(c.cell);
    let poly = cellEls.get(c.cell);
    if (!poly) {
      poly = svgEl('polygon', { class: 'cell', 'data-cell': c.cell });
      poly.appendChild(svgEl('title'));
      layer.appendChild(poly);
      cellEls.set(c.cell, poly);
    }
    const supply = toNumber(c.supply);
    const demand = toNumber(c.demand);
    const surge = surgeValue(c);
    poly.setAttribute(
      'points',
      c.boundary.map(([lat, lng]) => proj.toXY(lat, lng).map(r1).join(',')).join(' '),
    );
    poly.setAttribute('fill', cellFill(c, maxSupply));
    poly.setAttribute('data-supply', String(supply));
    poly.setAttribute('data-demand', String(demand));
    poly.setAttribute('data-surge', surge === null ? '' : String(c.surge));
    poly.firstChild.textContent =
      `Cell ${c.cell}\n` +
      `Supply: ${supply} available driver${supply === 1 ? '' : 's'}\n` +
      `Demand: ${demand} open trip${demand === 1 ? '' : 's'}\n` +
      `Surge: ${surge === null ? 'none' : `${c.surge}×`}`;
  }
  for (const [id, el] of cellEls) {
    if (!seen.has(id)) {
      el.remove();
      cellEls.delete(id);
    }
  }
  const empty = $('#map-empty');
  empty.textContent = 'No active cells right now.';
  empty.style.display = cells.length ? 'none' : '';
}

function renderTrips() {
  const layer = $('#trips-layer');
  const proj = state.projection;
  const seen = new Set();
  for (const t of proj ? openTrips() : []) {
    const lat = t.pickup && Number(t.pickup.lat);
    const lng = t.pickup && Number(t.pickup.lng);
    if (!Number.isFinite(lat) || !Number.isFinite(lng)) continue;
    seen.add(t.trip_id);
    let dot = tripEls.get(t.trip_id);
    if (!dot) {
      dot = svgEl('circle', { class: 'trip', r: 5, 'data-trip': t.trip_id });
      dot.appendChild(svgEl('title'));
      layer.appendChild(dot);
      tripEls.set(t.trip_id, dot);
    }
    const [x, y] = proj.toXY(lat, lng);
    dot.setAttribute('cx', r1(x));
    dot.setAttribute('cy', r1(y));
    dot.setAttribute('class', `trip status-${t.status}`);
    dot.setAttribute('data-status', String(t.status));
    dot.firstChild.textContent =
      `Trip ${t.trip_id}: ${t.status}\n` +
      `Driver: ${t.driver_id || '—'}\n` +
      `Class: ${t.vehicle_class || '—'}\n` +
      `Fare: ${t.fare ?? '—'}`;
  }
  for (const [id, el] of tripEls) {
    if (!seen.has(id)) {
      el.remove();
      tripEls.delete(id);
    }
  }
}

// The clicked point, the search radius and the drivers found near it.
function renderMarker() {
  const layer = $('#marker-layer');
  layer.replaceChildren();
  const proj = state.projection;
  if (!proj || !state.clicked) return;
  const [x, y] = proj.toXY(state.clicked.lat, state.clicked.lng);
  layer.appendChild(
    svgEl('circle', {
      class: 'radius',
      cx: r1(x),
      cy: r1(y),
      r: r1(NEARBY_RADIUS_KM * proj.unitsPerKm),
    }),
  );
  for (const d of state.nearby) {
    const lat = Number(d.lat);
    const lng = Number(d.lng);
    if (!Number.isFinite(lat) || !Number.isFinite(lng)) continue;
    const [dx, dy] = proj.toXY(lat, lng);
    const mark = svgEl('rect', {
      class: d.available === false ? 'driver busy' : 'driver',
      x: r1(dx - 4),
      y: r1(dy - 4),
      width: 8,
      height: 8,
      'data-driver': String(d.driver_id),
    });
    const title = svgEl('title');
    title.textContent = `Driver ${d.driver_id}, ${formatKm(d.distance_km)}`;
    mark.appendChild(title);
    layer.appendChild(mark);
  }
  const pin = svgEl('g', { class: 'marker' });
  pin.appendChild(svgEl('line', { x1: r1(x - 10), y1: r1(y), x2: r1(x + 10), y2: r1(y) }));
  pin.appendChild(svgEl('line', { x1: r1(x), y1: r1(y - 10), x2: r1(x), y2: r1(y + 10) }));
  pin.appendChild(svgEl('circle', { cx: r1(x), cy: r1(y), r: 4 }));
  layer.appendChild(pin);
}

// ---------------------------------------------------------------- trips table

function statusPill(status) {
  const span = document.createElement('span');
  span.className = `pill status-${status}`;
  span.textContent = status;
  return span;
}

function renderTable() {
  const tbody = $('#trips tbody');
  const rank = (s) => {
    const i = STATUS_ORDER.indexOf(s);
    return i === -1 ? STATUS_ORDER.length : i;
  };
  const trips = openTrips().sort(
    (a, b) => rank(a.status) - rank(b.status) || a.trip_id.localeCompare(b.trip_id, undefined, { numeric: true }),
  );
  const rows = trips.map((t) => {
    const tr = document.createElement('tr');
    tr.dataset.trip = t.trip_id;
    const cells = [
      t.trip_id,
      statusPill(t.status),
      t.driver_id || '—',
      t.vehicle_class || '—',
      t.fare ?? '—',
    ];
    cells.forEach((value, i) => {
      const td = document.createElement('td');
      if (value instanceof Node) td.appendChild(value);
      else td.textContent = String(value);
      if (i === 4) td.className = 'num';
      tr.appendChild(td);
    });
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = 'No open trips.';
    tr.appendChild(td);
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  $('#trip-count').textContent = String(trips.length);
}

// ---------------------------------------------------------------- live feed

function formatTime(ts) {
  const t = Date.parse(ts);
  return (Number.isFinite(t) ? new Date(t) : new Date()).toLocaleTimeString();
}

function onTripEvent(raw) {
  let e;
  try {
    e = JSON.parse(raw);
  } catch {
    console.warn('fleetstream: ignoring malformed trip event');
    return;
  }
  if (!e || typeof e !== 'object') return;
  // After a reconnect the server may resend events we already show.
  if (e.event_id !== undefined && e.event_id !== null) {
    const id = String(e.event_id);
    if (state.seenEvents.includes(id)) return;
    state.seenEvents.push(id);
    if (state.seenEvents.length > FEED_MAX * 4) state.seenEvents.shift();
  }

  const feed = $('#feed');
  state.feedReceived += 1;
  feed.dataset.received = String(state.feedReceived);

  const li = document.createElement('li');
  li.className = 'new';
  if (e.event_id !== undefined && e.event_id !== null) li.dataset.event = String(e.event_id);

  const time = document.createElement('time');
  time.textContent = formatTime(e.ts);
  if (e.ts) time.dateTime = String(e.ts);

  const text = document.createElement('span');
  text.className = 'what';
  let what = `trip ${e.trip_id ?? '?'}`;
  if (e.driver_id) what += ` · driver ${e.driver_id}`;
  if (e.fare !== undefined && e.fare !== null) what += ` · fare ${e.fare}`;
  text.textContent = what;

  li.append(time, statusPill(e.type ?? 'event'), text);
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  setTimeout(() => li.classList.remove('new'), 1500);
}

// ---------------------------------------------------------------- nearby drivers

function formatKm(km) {
  const n = Number(km);
  return Number.isFinite(n) ? `${n.toFixed(2)} km` : '? km';
}

function formatPoint({ lat, lng }) {
  return `${lat.toFixed(5)}, ${lng.toFixed(5)}`;
}

// Client (CSS pixel) coordinates -> SVG user coordinates of #map.
function clientToSvg(clientX, clientY) {
  const svg = $('#map');
  const ctm = svg.getScreenCTM ? svg.getScreenCTM() : null;
  if (ctm && typeof DOMPoint === 'function') {
    const p = new DOMPoint(clientX, clientY).matrixTransform(ctm.inverse());
    return { x: p.x, y: p.y };
  }
  // Fallback: viewBox with preserveAspectRatio="xMidYMid meet".
  const r = svg.getBoundingClientRect();
  if (!r.width || !r.height) return null;
  const scale = Math.min(r.width / VIEW_W, r.height / VIEW_H);
  return {
    x: (clientX - r.left - (r.width - VIEW_W * scale) / 2) / scale,
    y: (clientY - r.top - (r.height - VIEW_H * scale) / 2) / scale,
  };
}

function onMapClick(ev) {
  if (!state.projection) return;
  const p = clientToSvg(ev.clientX, ev.clientY);
  if (!p || p.x < 0 || p.y < 0 || p.x > VIEW_W || p.y > VIEW_H) return;
  queryNearby(state.projection.toLatLng(p.x, p.y));
}

async function queryNearby(point) {
  const seq = ++state.nearbySeq;
  state.clicked = point;
  state.nearby = [];
  renderMarker();
  $('#nearby').replaceChildren();
  $('#nearby-info').textContent = `Searching near ${formatPoint(point)}…`;

  const query = new URLSearchParams({
    lat: point.lat.toFixed(6),
    lng: point.lng.toFixed(6),
    radius_km: String(NEARBY_RADIUS_KM),
    limit: String(NEARBY_LIMIT),
  });
  let data;
  try {
    data = await api(`/v1/drivers/nearby?${query}`);
  } catch (err) {
    if (seq !== state.nearbySeq) return;
    $('#nearby-info').textContent = 'Lookup failed.';
    handleApiError(err, 'Nearby drivers');
    return;
  }
  if (seq !== state.nearbySeq) return; // a newer click won
  state.nearby = Array.isArray(data && data.drivers) ? data.drivers : [];
  renderNearby();
  renderMarker();
}

function renderNearby() {
  const n = state.nearby.length;
  const where = formatPoint(state.clicked);
  $('#nearby-info').textContent = n
    ? `${n} driver${n === 1 ? '' : 's'} within ${NEARBY_RADIUS_KM} km of ${where}`
    : `No drivers within ${NEARBY_RADIUS_KM} km of ${where}.`;
  const items = state.nearby.map((d) => {
    const li = document.createElement('li');
    li.dataset.driver = String(d.driver_id);
    const id = document.createElement('strong');
    id.textContent = String(d.driver_id);
    const dist = document.createElement('span');
    dist.className = 'num';
    dist.textContent = formatKm(d.distance_km);
    const cls = document.createElement('span');
    cls.className = 'muted';
    cls.textContent = d.vehicle_class || '—';
    li.append(id, dist, cls);
    if (d.available === false) {
      const busy = document.createElement('span');
      busy.className = 'pill busy';
      busy.textContent = 'busy';
      li.append(busy);
    }
    return li;
  });
  $('#nearby').replaceChildren(...items);
}

// ---------------------------------------------------------------- wiring

function init() {
  const savedLayer = storageGet(LAYER_KEY);
  if (savedLayer && RAMPS[savedLayer]) state.layer = savedLayer;
  for (const input of document.querySelectorAll('input[name="layer"]')) {
    input.checked = input.value === state.layer;
  }
  $('#layer').addEventListener('change', (ev) => {
    if (!ev.target.matches('input[name="layer"]') || !RAMPS[ev.target.value]) return;
    state.layer = ev.target.value;
    storageSet(LAYER_KEY, state.layer);
    renderLegend();
    if (state.data) renderCells();
  });
  renderLegend();

  $('#map').addEventListener('click', onMapClick);

  $('#login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('#token-input').value.trim();
    if (!token) return;
    $('#token-input').value = '';
    state.token = token;
    storageSet(TOKEN_KEY, token);
    clearError();
    start();
  });

  $('#signout').addEventListener('click', () => signOut());

  setLive(false);
  state.token = takeToken();
  if (state.token) start();
  else showLogin();
}

init();
