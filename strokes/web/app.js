// strokes — drawing page front end.
//
// Records pointer strokes on a canvas, sends them to POST /api/classify after
// each finished stroke (debounced) and shows the top-k predictions, each with
// the package it needs and its mode. "Not in the list? Teach it" collects
// several drawings of a new symbol and posts them to POST /api/teach; when the
// server collects (strokes serve --collect), copying a result posts the
// drawing and that symbol to POST /api/collect.
// Plain script, no build step, no dependencies.
'use strict';

(() => {
  const TOP_K = 5;
  const DEBOUNCE_MS = 150;
  const TEACH_MIN = 3;      // drawings the page asks for before it teaches
  const TEACH_MAX = 20;     // and the most it sends in one request (the server allows more)

  const $ = (id) => document.getElementById(id);
  const canvas = $('pad');
  const ctx = canvas.getContext('2d');
  const resultsEl = $('results');
  const statusEl = $('status');
  const modelEl = $('model');

  // ---- state -------------------------------------------------------------
  const strokes = [];       // finished strokes: arrays of {x, y, t}; never reassigned
  let current = null;       // stroke being drawn, or null
  let activePointer = null; // pointerId of the pointer that draws `current`
  let padRect = null;       // canvas bounding rect cached at pointerdown
  let view = { w: 1, h: 1, dpr: 1 }; // canvas CSS size and backing-store scale
  let debounceTimer = 0;
  let requestId = 0;        // bumped for every request; only the latest may render
  let controller = null;    // AbortController of the in-flight request
  let inkVersion = 0;       // bumped whenever the drawing changes
  let collectedVersion = -1; // the drawing last posted to /api/collect
  const server = { teach: false, collect: false, maxLabel: 64, maxDrawings: TEACH_MAX };

  /** "idle" (no ink), "pending" (ink changed, answer not shown yet), "ready", "error". */
  function setState(state) {
    document.body.dataset.state = state;
    resultsEl.setAttribute('aria-busy', String(state === 'pending'));
  }

  function setStatus(message, isError = false) {
    statusEl.textContent = message;
    statusEl.classList.toggle('is-error', Boolean(message) && isError);
  }

  // ---- canvas sizing and drawing -----------------------------------------

  /** Match the backing store to CSS size * devicePixelRatio, then redraw. */
  function resize() {
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    view = { w: Math.max(1, rect.width), h: Math.max(1, rect.height), dpr };
    const w = Math.round(view.w * dpr);
    const h = Math.round(view.h * dpr);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;   // resets the context state; redraw() restores it
      canvas.height = h;
    }
    redraw();
  }

  /** Context settings; reapplied after every resize. Ink colour comes from CSS. */
  function applyInkStyle() {
    ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = Math.max(2.5, Math.min(view.w, view.h) / 90);
    ctx.strokeStyle = getComputedStyle(canvas).color || '#111';
  }

  function drawStroke(points) {
    if (!points.length) return;
    ctx.beginPath();
    ctx.moveTo(points[0].x, points[0].y);
    // A single point becomes a tiny segment so the round cap renders a dot.
    if (points.length === 1) ctx.lineTo(points[0].x + 0.01, points[0].y);
    for (let i = 1; i < points.length; i++) ctx.lineTo(points[i].x, points[i].y);
    ctx.stroke();
  }

  function redraw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    applyInkStyle();
    strokes.forEach(drawStroke);
    if (current) drawStroke(current);
  }

  // ---- pointer input -----------------------------------------------------

  const round1 = (v) => Math.round(v * 10) / 10;
  // Epoch ms of performance.now() == 0 (timeOrigin is missing in very old Safari).
  const TIME_ORIGIN = performance.timeOrigin || Date.now() - performance.now();

  /** Point in canvas CSS pixels; t is epoch ms (same clock as Date.now()). */
  function toPoint(e) {
    const ts = e.timeStamp > 0 ? e.timeStamp : performance.now();
    return {
      x: round1(e.clientX - padRect.left),
      y: round1(e.clientY - padRect.top),
      t: Math.round(TIME_ORIGIN + ts),
    };
  }

  /** Append a point to the current stroke and draw the new segment. */
  function addPoint(p) {
    const last = current[current.length - 1];
    if (last && last.x === p.x && last.y === p.y) return; // skip jitter duplicates
    current.push(p);
    drawStroke(last ? [last, p] : [p]);
  }

  function onPointerDown(e) {
    if (activePointer !== null) return;                      // one stroke at a time
    if (e.pointerType === 'mouse' && e.button !== 0) return; // left button only
    e.preventDefault();
    activePointer = e.pointerId;
    try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* not fatal */ }
    padRect = canvas.getBoundingClientRect();
    clearTimeout(debounceTimer); // a new stroke cancels a pending send
    current = [];
    addPoint(toPoint(e));
    setState('pending');
  }

  function onPointerMove(e) {
    if (e.pointerId !== activePointer || !current) return;
    // Coalesced events carry the intermediate samples of fast pens/mice.
    const samples = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const s of samples.length ? samples : [e]) addPoint(toPoint(s));
  }

  /** pointerup / pointercancel / lostpointercapture all end the stroke (idempotent). */
  function onPointerEnd(e) {
    if (e.pointerId !== activePointer || !current) return;
    if (e.type === 'pointerup') addPoint(toPoint(e));
    activePointer = null;
    strokes.push(current);
    current = null;
    inkVersion++;
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(classify, DEBOUNCE_MS);
  }

  // ---- classification ----------------------------------------------------

  /** Abort the in-flight request and make any answer still on its way stale. */
  function cancelRequests() {
    clearTimeout(debounceTimer);
    requestId++;
    if (controller) controller.abort();
    controller = null;
  }

  /**
   * Classify the finished strokes now. Resolves to the results array, or null
   * when the request failed or was superseded by a newer one.
   */
  async function classify() {
    cancelRequests();
    const id = requestId;
    if (!strokes.length) {
      showHint();
      setState('idle');
      return [];
    }
    controller = new AbortController();
    setState('pending');

    let res, data;
    try {
      res = await fetch(`/api/classify?k=${TOP_K}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ strokes }),
        signal: controller.signal,
      });
      data = await res.json().catch(() => null);
    } catch (err) {
      if (id !== requestId || err.name === 'AbortError') return null;
      setStatus('Cannot reach the server. Is it running?', true);
      setState('error');
      return null;
    }
    if (id !== requestId) return null; // a newer request owns the display

    if (!res.ok || !data) {
      const msg = (data && data.error) || `Server error (HTTP ${res.status}).`;
      setStatus(msg, true);
      setState('error');
      return null;
    }
    const results = Array.isArray(data.results) ? data.results.slice(0, TOP_K) : [];
    renderResults(results);
    setStatus('');
    setState(current ? 'pending' : 'ready'); // still drawing: newer ink is coming
    return results;
  }

  // ---- results rendering (textContent only: server strings are never HTML) --

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showHint(text = 'Draw a symbol') {
    resultsEl.replaceChildren(el('p', 'hint', text));
  }

  function formatPercent(score) {
    const pct = Math.min(1, Math.max(0, Number(score) || 0)) * 100;
    return pct < 10 && pct > 0 ? `${pct.toFixed(1)}%` : `${Math.round(pct)}%`;
  }

  const MODE_TEXT = { math: 'math mode', text: 'text mode', both: 'math and text mode' };

  /** "math mode · \usepackage{amssymb}" (and "taught"), as detexify shows it. */
  function describe(r) {
    const meta = el('div', 'meta');
    meta.append(el('span', 'mode', MODE_TEXT[r.mode] || String(r.mode || 'math mode')));
    if (r.package) meta.append(el('span', 'pkg', `\\usepackage{${r.package}}`));
    if (r.taught) meta.append(el('span', 'badge', 'taught'));
    if (r.note) {
      meta.append(el('span', 'note', r.note));
    }
    return meta;
  }

  function renderResults(results) {
    if (!results.length) {
      showHint('No matches');
      return;
    }
    const list = el('ol', 'result-list');
    results.forEach((r, i) => {
      const symbol = String(r.symbol);
      const pct = formatPercent(r.score);
      const row = el('li', 'result');
      row.dataset.symbol = symbol;

      row.append(el('span', 'rank', String(i + 1)));
      const glyph = el('span', r.unicode ? 'glyph' : 'glyph none', r.unicode || '–');
      glyph.setAttribute('aria-hidden', 'true');
      row.append(glyph);

      const info = el('div', 'info');
      info.append(el('code', '', symbol));
      info.append(describe(r));
      const prob = el('div', 'prob');
      prob.append(el('span', 'pct', pct));
      const bar = el('span', 'bar');
      bar.setAttribute('aria-hidden', 'true');
      const fill = el('span', 'bar-fill');
      fill.style.width = pct.replace('%', '') + '%';
      bar.append(fill);
      prob.append(bar);
      info.append(prob);
      row.append(info);

      const copy = el('button', 'copy', 'Copy');
      copy.type = 'button';
      copy.dataset.copy = symbol;
      copy.setAttribute('aria-label', `Copy ${symbol}`);
      row.append(copy);
      list.append(row);
    });
    resultsEl.replaceChildren(list);
  }

  // ---- clipboard ---------------------------------------------------------

  async function copyText(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch (_) { /* fall through to the legacy path */ }
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.cssText = 'position:fixed;top:0;left:0;opacity:0;';
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
    ta.remove();
    return ok;
  }

  resultsEl.addEventListener('click', async (e) => {
    const button = e.target.closest('button[data-copy]');
    if (!button) return;
    collect(button.dataset.copy);
    const ok = await copyText(button.dataset.copy);
    button.textContent = ok ? 'Copied' : 'Failed';
    button.classList.toggle('copied', ok);
    clearTimeout(button._resetTimer);
    button._resetTimer = setTimeout(() => {
      button.textContent = 'Copy';
      button.classList.remove('copied');
    }, 1200);
  });

  // ---- collecting (only when the server says it collects) -------------------

  /** Post the current drawing as an example of `symbol`, once per drawing. */
  async function collect(symbol) {
    if (!server.collect || !strokes.length || collectedVersion === inkVersion) return;
    collectedVersion = inkVersion;
    try {
      const res = await fetch('/api/collect', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ label: symbol, drawing: compact(strokes) }),
      });
      if (res.ok) setStatus(`Kept this drawing as ${symbol}. Thanks!`);
    } catch (_) { /* collecting is best effort: copying still worked */ }
  }

  /** Strokes as [x, y, t] arrays: about half the bytes of {x, y, t} objects. */
  function compact(ink) {
    return ink.map((s) => s.map((p) => [p.x, p.y, p.t]));
  }

  // ---- teaching: "Not in the list? Teach it" --------------------------------

  const teachEl = $('teach');
  const teachLabel = $('teach-label');
  const teachShotsEl = $('teach-shots');
  const teachCount = $('teach-count');
  const teachAdd = $('teach-add');
  const teachSubmit = $('teach-submit');
  const teachStatus = $('teach-status');
  const teachShots = [];    // drawings added so far (arrays of strokes)
  let teaching = false;     // a request is in flight

  function setTeachStatus(message, isError = false) {
    teachStatus.textContent = message;
    teachStatus.classList.toggle('is-error', Boolean(message) && isError);
  }

  function updateTeach() {
    const n = teachShots.length;
    teachCount.textContent = n >= TEACH_MIN
      ? `${n} drawing${n === 1 ? '' : 's'}: ready to teach (more drawings help)`
      : `${n} of ${TEACH_MIN} drawings`;
    teachAdd.disabled = teaching || n >= server.maxDrawings;
    teachSubmit.disabled = teaching || n < TEACH_MIN || !teachLabel.value.trim();
  }

  /** A small picture of a drawing, scaled to fit. */
  function thumbnail(ink) {
    const size = 44;
    const dpr = window.devicePixelRatio || 1;
    const c = document.createElement('canvas');
    c.className = 'shot';
    c.width = Math.round(size * dpr);
    c.height = Math.round(size * dpr);
    c.setAttribute('role', 'img');
    c.setAttribute('aria-label', `Drawing ${teachShots.length}`);
    const g = c.getContext('2d');
    const pts = ink.flat();
    const xs = pts.map((p) => p.x);
    const ys = pts.map((p) => p.y);
    const x0 = Math.min(...xs);
    const y0 = Math.min(...ys);
    const span = Math.max(1, Math.max(...xs) - x0, Math.max(...ys) - y0);
    const k = (size - 8) / span;
    const dx = (size - (Math.max(...xs) - x0) * k) / 2;
    const dy = (size - (Math.max(...ys) - y0) * k) / 2;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.lineCap = 'round';
    g.lineJoin = 'round';
    g.lineWidth = 1.6;
    g.strokeStyle = getComputedStyle(canvas).color || '#111';
    for (const s of ink) {
      g.beginPath();
      g.moveTo(dx + (s[0].x - x0) * k, dy + (s[0].y - y0) * k);
      if (s.length === 1) g.lineTo(dx + (s[0].x - x0) * k + 0.01, dy + (s[0].y - y0) * k);
      for (let i = 1; i < s.length; i++) g.lineTo(dx + (s[i].x - x0) * k, dy + (s[i].y - y0) * k);
      g.stroke();
    }
    return c;
  }

  function addTeachDrawing() {
    if (!strokes.length) {
      setTeachStatus('Draw the symbol on the pad first, then press Add drawing.', true);
      return;
    }
    if (teachShots.length >= server.maxDrawings) return;
    const ink = strokes.map((s) => s.map((p) => ({ x: p.x, y: p.y, t: p.t })));
    teachShots.push(ink);
    teachShotsEl.append(thumbnail(ink));
    clear();
    const left = TEACH_MIN - teachShots.length;
    setTeachStatus(left > 0 ? `Added. Draw it ${left} more time${left === 1 ? '' : 's'}.` : 'Added.');
    updateTeach();
  }

  function resetTeach(keepStatus = false) {
    teachShots.length = 0;
    teachShotsEl.replaceChildren();
    if (!keepStatus) setTeachStatus('');
    updateTeach();
  }

  async function submitTeach() {
    const label = teachLabel.value.trim();
    if (!label) {
      setTeachStatus('Type the LaTeX command first, e.g. \\heartsuit.', true);
      teachLabel.focus();
      return;
    }
    if (teachShots.length < TEACH_MIN) {
      setTeachStatus(`Add at least ${TEACH_MIN} drawings first.`, true);
      return;
    }
    teaching = true;
    updateTeach();
    setTeachStatus('Teaching…');
    let res, data;
    try {
      res = await fetch('/api/teach', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ label, drawings: teachShots.map(compact) }),
      });
      data = await res.json().catch(() => null);
    } catch (_) {
      teaching = false;
      updateTeach();
      setTeachStatus('Cannot reach the server. Is it running?', true);
      return;
    }
    teaching = false;
    if (!res.ok || !data) {
      updateTeach();
      setTeachStatus((data && data.error) || `Server error (HTTP ${res.status}).`, true);
      return;
    }
    resetTeach(true);
    setTeachStatus(`Taught ${data.label} from ${data.stored} drawing${data.stored === 1 ? '' : 's'} `
      + `(${data.total} in all). Draw it to try.`);
    loadModelInfo();
  }

  teachAdd.addEventListener('click', addTeachDrawing);
  teachSubmit.addEventListener('click', submitTeach);
  $('teach-reset').addEventListener('click', () => resetTeach());
  teachLabel.addEventListener('input', updateTeach);
  teachLabel.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !teachSubmit.disabled) submitTeach();
  });

  // ---- undo / clear ------------------------------------------------------

  function clear() {
    strokes.length = 0;
    inkVersion++;
    current = null;
    activePointer = null;
    cancelRequests();
    redraw();
    showHint();
    setStatus('');
    setState('idle');
  }

  /** Remove the last stroke (or abandon the one being drawn) and re-classify. */
  function undo() {
    if (current) {
      current = null;
      activePointer = null;
    } else {
      strokes.pop();
      inkVersion++;
    }
    if (!strokes.length) {
      clear();
      return Promise.resolve([]);
    }
    redraw();
    return classify();
  }

  $('undo').addEventListener('click', () => { undo(); });
  $('clear').addEventListener('click', clear);

  document.addEventListener('keydown', (e) => {
    if (e.target.closest && e.target.closest('input, textarea, [contenteditable]')) return;
    const isZ = e.key === 'z' || e.key === 'Z' || e.code === 'KeyZ';
    if ((e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && isZ) {
      e.preventDefault();
      undo();
    } else if (e.key === 'Escape') {
      clear();
    }
  });

  // ---- footer: model info; what the server allows --------------------------

  async function loadServerInfo() {
    try {
      const res = await fetch('/healthz', { headers: { Accept: 'application/json' } });
      if (!res.ok) return;
      const data = await res.json();
      server.teach = data.teach === true;
      server.collect = data.collect === true;
      if (Number.isInteger(data.max_label_chars)) server.maxLabel = data.max_label_chars;
      if (Number.isInteger(data.max_drawings)) server.maxDrawings = Math.min(TEACH_MAX, data.max_drawings);
    } catch (_) { return; }
    teachLabel.maxLength = server.maxLabel;
    teachEl.hidden = !server.teach;
    $('collect-note').hidden = !server.collect;
    updateTeach();
  }

  async function loadModelInfo() {
    try {
      const res = await fetch('/api/symbols', { headers: { Accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const data = await res.json();
      const symbols = Array.isArray(data.symbols) ? data.symbols : [];
      const taught = symbols.filter((s) => s && s.builtin === false).length;
      modelEl.textContent = `Model: ${data.model || 'unknown'} · ${symbols.length} symbols`
        + (taught ? ` (${taught} taught)` : '');
    } catch (_) {
      modelEl.textContent = 'Model: unavailable';
      if (!statusEl.textContent) setStatus('Cannot reach the server. Is it running?', true);
    }
  }

  // ---- wiring ------------------------------------------------------------

  canvas.addEventListener('pointerdown', onPointerDown);
  canvas.addEventListener('pointermove', onPointerMove);
  canvas.addEventListener('pointerup', onPointerEnd);
  canvas.addEventListener('pointercancel', onPointerEnd);
  canvas.addEventListener('lostpointercapture', onPointerEnd);
  canvas.addEventListener('contextmenu', (e) => e.preventDefault()); // long-press menus

  new ResizeObserver(resize).observe(canvas);
  window.addEventListener('resize', resize);
  // devicePixelRatio can change without a resize (window moved to another screen).
  (function watchDpr() {
    const mq = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
    mq.addEventListener('change', () => { resize(); watchDpr(); }, { once: true });
  })();
  // Ink colour follows the light/dark theme.
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', redraw);

  window.strokesApp = { strokes, classify, clear, undo, redraw, teachShots, server };
  resize();
  showHint();
  setState('idle');
  updateTeach();
  loadModelInfo();
  loadServerInfo();
})();
